//! Recursive-descent parser for nft input files: block syntax (`table inet fw4 { ... }`) and
//! command syntax (`add rule ip t c ...`), with `define`/`$var`, `include` and comments.
//!
//! Variables are expanded at the token level, as nft does in effect: a `$name` is replaced by
//! the tokens of its definition, so a definition can be a set, a list or a single value.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::ast::*;
use crate::datatype::Dt;
use crate::error::{Error, Result, SourceMap, Span};
use crate::lexer::{lex, Tok, Token};

const MAX_INCLUDE_DEPTH: usize = 16;
const MAX_EXPANSION_DEPTH: usize = 64;
const MAX_NESTING: usize = 64;

struct Frame {
    toks: Rc<Vec<Token>>,
    pos: usize,
    /// A variable expansion (as opposed to a file).
    macro_depth: usize,
}

pub struct Parser<'a> {
    frames: Vec<Frame>,
    la: VecDeque<Token>,
    pub srcmap: &'a mut SourceMap,
    scopes: Vec<HashMap<String, Rc<Vec<Token>>>>,
    pub include_dirs: Vec<PathBuf>,
    include_depth: usize,
    nesting: usize,
    eof_span: Span,
    /// Anonymous chains (`jump { ... }`) get names `__chain0`... as the kernel does.
    pub anon_chains: u32,
    pending: Vec<Cmd>,
    /// The span of the token read last (where a statement ends, for nft's statement-wide errors).
    prev: Span,
    /// The token read last was a binary operator (`|`, `^`, `&`, `<<`, `>>`).
    after_op: bool,
}

/// Words nft's scanner always reads as keywords (nft 1.0.6), so its grammar refuses them where
/// it wants a plain string, such as a chain's name (`chain fwd`: "syntax error, unexpected fwd,
/// expecting string"). Found by declaring a chain of each name `nft` knows.
const NFT_KEYWORDS: &str = "\
    accept add ah all arp auto-merge bridge cgroup chain comment comp constant continue \
    counter cpu create ct day dccp define delete describe device devices dnat drop dst dup \
    dynamic ecn element elements esp ether exists expires export exthdr fib flags flow \
    flowtable flush frag fwd gc-interval get goto handle hbh hook hour ibriport ibrname \
    icmp icmpv6 igmp iif iifgroup iifname iiftype import include index inet insert interval \
    ip ip6 ipsec jhash jump limit list log map mark masquerade meta meter mh missing \
    monitor netdev nftrace notrack numgen obriport obrname offload oif oifgroup oifname \
    oiftype osf pkttype policy position priority queue quota random redefine redirect \
    reject rename replace reset return rt rt0 rt2 rtclassid rule ruleset sctp secmark set \
    size skgid skuid snat socket srh symhash synproxy table tcp th time timeout tproxy type \
    typeof udp udplite undefine update vlan vmap xt";

pub fn is_keyword_end(t: &Tok) -> bool {
    matches!(t, Tok::Newline | Tok::Semi | Tok::RBrace | Tok::Eof)
}

impl<'a> Parser<'a> {
    pub fn new(srcmap: &'a mut SourceMap, file: u32) -> Result<Parser<'a>> {
        let text = srcmap.files[file as usize].text.clone();
        let toks = lex(file, &text).map_err(|e| Error::new(e.span, e.msg))?;
        let eof_span = toks.last().map(|t| t.span).unwrap_or_default();
        let toks: Vec<Token> = toks.into_iter().filter(|t| t.tok != Tok::Eof).collect();
        Ok(Parser {
            frames: vec![Frame {
                toks: Rc::new(toks),
                pos: 0,
                macro_depth: 0,
            }],
            la: VecDeque::new(),
            srcmap,
            scopes: vec![HashMap::new()],
            include_dirs: vec![],
            include_depth: 0,
            nesting: 0,
            eof_span,
            anon_chains: 0,
            pending: vec![],
            prev: eof_span,
            after_op: false,
        })
    }

    // ---- token stream --------------------------------------------------------------------

    fn lookup_var(&self, name: &str) -> Option<Rc<Vec<Token>>> {
        self.scopes.iter().rev().find_map(|s| s.get(name).cloned())
    }

    fn fill(&mut self, n: usize) -> Result<()> {
        while self.la.len() <= n {
            let Some(f) = self.frames.last_mut() else {
                self.la.push_back(Token {
                    tok: Tok::Eof,
                    span: self.eof_span,
                    space_before: true,
                });
                continue;
            };
            if f.pos >= f.toks.len() {
                if self.frames.len() == 1 {
                    self.la.push_back(Token {
                        tok: Tok::Eof,
                        span: self.eof_span,
                        space_before: true,
                    });
                    continue;
                }
                self.frames.pop();
                continue;
            }
            let t = f.toks[f.pos].clone();
            f.pos += 1;
            let depth = f.macro_depth;
            if let Tok::Var(name) = &t.tok {
                let Some(def) = self.lookup_var(name) else {
                    return Err(Error::new(t.span, format!("unknown identifier '{name}'")));
                };
                if depth >= MAX_EXPANSION_DEPTH {
                    return Err(Error::new(
                        t.span,
                        format!("too many nested expansions of '{name}'"),
                    ));
                }
                // The expansion keeps the span of the use site so errors point at `$name`.
                let toks: Vec<Token> = def
                    .iter()
                    .map(|d| Token {
                        tok: d.tok.clone(),
                        span: t.span,
                        space_before: d.space_before,
                    })
                    .collect();
                self.frames.push(Frame {
                    toks: Rc::new(toks),
                    pos: 0,
                    macro_depth: depth + 1,
                });
                continue;
            }
            self.la.push_back(t);
        }
        Ok(())
    }

    pub fn peek(&mut self) -> Result<&Tok> {
        self.fill(0)?;
        Ok(&self.la[0].tok)
    }

    pub fn peek_n(&mut self, n: usize) -> Result<&Tok> {
        self.fill(n)?;
        Ok(&self.la[n].tok)
    }

    pub fn peek_tok(&mut self) -> Result<&Token> {
        self.fill(0)?;
        Ok(&self.la[0])
    }

    pub fn span(&mut self) -> Result<Span> {
        self.fill(0)?;
        Ok(self.la[0].span)
    }

    pub fn next_tok(&mut self) -> Result<Token> {
        self.fill(0)?;
        let t = self.la.pop_front().expect("filled");
        self.prev = t.span;
        self.after_op = is_binop_tok(&t.tok) || matches!(&t.tok, Tok::Word(x) if is_binop_word(x));
        Ok(t)
    }

    /// `start` widened to the end of the token read last, as nft locates a whole statement
    /// (`dup`, `fwd`); `start` alone when that token is not after it in the same file (it came
    /// from a variable's definition or an include).
    fn to_prev(&self, start: Span) -> Span {
        if self.prev.file == start.file && self.prev.lo >= start.lo {
            start.to(self.prev)
        } else {
            start
        }
    }

    /// The next word, read, if `want` takes it; `None`, with nothing read, otherwise.
    fn word_if(&mut self, want: impl Fn(&str) -> bool) -> Result<Option<String>> {
        match self.peek_word()? {
            Some(x) if want(&x) => {
                self.next_tok()?;
                Ok(Some(x))
            }
            _ => Ok(None),
        }
    }

    fn peek_word(&mut self) -> Result<Option<String>> {
        Ok(match self.peek()? {
            Tok::Word(w) => Some(w.clone()),
            _ => None,
        })
    }

    fn is_word(&mut self, w: &str) -> Result<bool> {
        Ok(matches!(self.peek()?, Tok::Word(x) if x == w))
    }

    fn is_word_n(&mut self, n: usize, w: &str) -> Result<bool> {
        Ok(matches!(self.peek_n(n)?, Tok::Word(x) if x == w))
    }

    fn eat_word(&mut self, w: &str) -> Result<bool> {
        if self.is_word(w)? {
            self.next_tok()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn eat(&mut self, t: &Tok) -> Result<bool> {
        if self.peek()? == t {
            self.next_tok()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// The next word of a `{ ... }` block, after separators, with its span, left to be read;
    /// `None` once the closing brace is read. Anything else is an error expecting `what`.
    fn block_word(&mut self, what: &str) -> Result<Option<(String, Span)>> {
        self.skip_seps()?;
        let t = self.peek_tok()?.clone();
        match t.tok {
            Tok::RBrace => {
                self.next_tok()?;
                Ok(None)
            }
            Tok::Word(w) => Ok(Some((w, t.span))),
            _ => self.unexpected(what),
        }
    }

    pub fn unexpected<T>(&mut self, want: &str) -> Result<T> {
        let t = self.peek_tok()?.clone();
        let what = t.tok.describe();
        let msg = if want.is_empty() {
            format!("syntax error, unexpected {what}")
        } else {
            format!("syntax error, unexpected {what}, expecting {want}")
        };
        Err(Error::new(t.span, msg))
    }

    fn expect(&mut self, t: &Tok, want: &str) -> Result<Token> {
        if self.peek()? == t {
            self.next_tok()
        } else {
            self.unexpected(want)
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<Token> {
        if self.is_word(w)? {
            self.next_tok()
        } else {
            self.unexpected(w)
        }
    }

    /// A name: a word or a quoted string.
    pub fn ident(&mut self, what: &str) -> Result<(String, Span)> {
        let t = self.peek_tok()?.clone();
        match t.tok {
            Tok::Word(w) => {
                self.next_tok()?;
                Ok((w, t.span))
            }
            Tok::Str(s) => {
                self.next_tok()?;
                Ok((s, t.span))
            }
            _ => self.unexpected(what),
        }
    }

    /// A chain's name: a word that nft does not read as a keyword. nft's grammar takes a
    /// chain name as `identifier` (a bare STRING token, or `last`), never a QUOTED_STRING:
    /// nft 1.0.6 refuses `add chain ip t "foo"`, `chain "foo" {` and `jump "foo"`, and so
    /// does nft 1.1.x, whose listing we follow (its parser_bison.y still has `identifier :
    /// STRING | LAST`, and its listing prints chain names bare). So a quoted name is refused
    /// here too, with nft's words. `expecting` is what nft names as the alternative there:
    /// `string` where a chain is declared or named in a command, `'{'` after a `jump` or
    /// `goto` statement (nft then expects an anonymous chain), `string or '$'` in a verdict
    /// map's element.
    fn chain_ident_expecting(&mut self, expecting: &str) -> Result<(String, Span)> {
        let t = self.peek_tok()?.clone();
        match &t.tok {
            Tok::Word(w) if is_nft_keyword(w) => Err(Error::new(
                t.span,
                format!("syntax error, unexpected {w}, expecting {expecting}"),
            )),
            Tok::Str(_) => Err(Error::new(
                t.span,
                format!("syntax error, unexpected quoted string, expecting {expecting}"),
            )),
            _ => self.ident("chain name"),
        }
    }

    /// [`Self::chain_ident_expecting`] where nft expects a `string`.
    fn chain_ident(&mut self) -> Result<(String, Span)> {
        self.chain_ident_expecting("string")
    }

    /// `handle N` where a command may name its object by handle (`delete chain t handle 3`):
    /// that command; `None`, with nothing read, when a name follows instead.
    fn by_handle(&mut self, verb: &Verb, what: &str, table: &TableRef) -> Result<Option<Cmd>> {
        if !self.is_word("handle")? {
            return Ok(None);
        }
        self.next_tok()?;
        let (h, span) = self.number("handle")?;
        Ok(Some(Cmd::ByName {
            verb: verb.clone(),
            what: what.into(),
            table: Some(table.clone()),
            name: None,
            handle: Some(h),
            span,
        }))
    }

    fn number(&mut self, what: &str) -> Result<(u64, Span)> {
        let t = self.peek_tok()?.clone();
        if let Tok::Word(w) = &t.tok {
            if let Some(n) = parse_u64(w) {
                self.next_tok()?;
                return Ok((n, t.span));
            }
        }
        self.unexpected(what)
    }

    fn string_arg(&mut self, what: &str) -> Result<String> {
        Ok(self.ident(what)?.0)
    }

    fn skip_newlines(&mut self) -> Result<()> {
        while matches!(self.peek()?, Tok::Newline) {
            self.next_tok()?;
        }
        Ok(())
    }

    fn skip_seps(&mut self) -> Result<()> {
        while matches!(self.peek()?, Tok::Newline | Tok::Semi) {
            self.next_tok()?;
        }
        Ok(())
    }

    fn end_of_stmt(&mut self) -> Result<()> {
        match self.peek()? {
            Tok::Newline | Tok::Semi => {
                self.next_tok()?;
                Ok(())
            }
            Tok::RBrace | Tok::Eof => Ok(()),
            _ => self.unexpected("newline"),
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            let sp = self.span()?;
            return Err(Error::new(sp, "too many nested blocks or expressions"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    // ---- top level -----------------------------------------------------------------------

    pub fn parse_all(&mut self) -> Result<Vec<Cmd>> {
        let mut cmds = Vec::new();
        loop {
            self.skip_seps()?;
            if matches!(self.peek()?, Tok::Eof) {
                break;
            }
            self.top_cmd(&mut cmds)?;
            cmds.append(&mut self.pending);
        }
        Ok(cmds)
    }

    fn top_cmd(&mut self, out: &mut Vec<Cmd>) -> Result<()> {
        let t = self.peek_tok()?.clone();
        let Tok::Word(w) = &t.tok else {
            return self.unexpected("command");
        };
        match w.as_str() {
            "define" | "redefine" => {
                self.next_tok()?;
                self.define(w == "redefine")
            }
            "undefine" => {
                self.next_tok()?;
                let (name, sp) = self.ident("identifier")?;
                if self
                    .scopes
                    .last_mut()
                    .and_then(|s| s.remove(&name))
                    .is_none()
                {
                    return Err(Error::new(sp, format!("undefined symbol '{name}'")));
                }
                self.end_of_stmt()
            }
            "include" => {
                self.next_tok()?;
                self.include()
            }
            "add" | "create" | "insert" | "replace" | "delete" | "destroy" | "flush" | "reset"
            | "list" => {
                self.next_tok()?;
                let verb = match w.as_str() {
                    "add" => Verb::Add,
                    "create" => Verb::Create,
                    "insert" => Verb::Insert,
                    "replace" => Verb::Replace,
                    "delete" => Verb::Delete,
                    "destroy" => Verb::Destroy,
                    "flush" => Verb::Flush,
                    "reset" => Verb::Reset,
                    _ => Verb::List,
                };
                self.verb_cmd(verb, out)?;
                self.end_of_stmt()
            }
            "rename" => {
                self.next_tok()?;
                self.expect_word("chain")?;
                let table = self.table_ref()?;
                let (from, sp) = self.chain_ident()?;
                let (to, _) = self.chain_ident()?;
                out.push(Cmd::RenameChain {
                    table,
                    from,
                    to,
                    span: sp,
                });
                self.end_of_stmt()
            }
            "describe" | "monitor" | "export" | "import" => {
                // Not ruleset changes: skip to the end of the line.
                while !matches!(self.peek()?, Tok::Newline | Tok::Semi | Tok::Eof) {
                    self.next_tok()?;
                }
                out.push(Cmd::Noop);
                Ok(())
            }
            "table" | "chain" | "rule" | "set" | "map" | "element" | "flowtable" | "counter"
            | "quota" | "ct" | "limit" | "secmark" | "synproxy" | "tunnel" => {
                self.verb_cmd(Verb::Add, out)?;
                self.end_of_stmt()
            }
            _ => self.unexpected("command"),
        }
    }

    fn define(&mut self, redefine: bool) -> Result<()> {
        let (name, sp) = self.ident("identifier")?;
        self.expect(&Tok::Eq, "'='")?;
        let mut toks = Vec::new();
        let mut depth = 0i32;
        loop {
            let t = self.peek_tok()?.clone();
            match t.tok {
                Tok::Eof => break,
                Tok::Newline | Tok::Semi if depth == 0 => break,
                Tok::RBrace if depth == 0 => break,
                Tok::LBrace | Tok::LParen | Tok::LBracket => depth += 1,
                Tok::RBrace | Tok::RParen | Tok::RBracket => depth -= 1,
                Tok::Newline => {
                    self.next_tok()?;
                    continue;
                }
                _ => {}
            }
            toks.push(self.next_tok()?);
        }
        if toks.is_empty() {
            return self.unexpected("value");
        }
        let scope = self.scopes.last_mut().expect("scope");
        if !redefine && scope.contains_key(&name) {
            // nft allows shadowing in inner scopes but not redefining in the same one
            return Err(Error::new(sp, format!("redefinition of symbol '{name}'")));
        }
        scope.insert(name, Rc::new(toks));
        self.end_of_stmt()
    }

    fn include(&mut self) -> Result<()> {
        let t = self.next_tok()?;
        let Tok::Str(path) = t.tok else {
            return Err(Error::new(
                t.span,
                "syntax error, unexpected token, expecting quoted string",
            ));
        };
        if self.include_depth >= MAX_INCLUDE_DEPTH {
            return Err(Error::new(
                t.span,
                "Include nested too deeply, max 16 levels",
            ));
        }
        let base = self
            .srcmap
            .files
            .get(t.span.file as usize)
            .map(|f| f.name.clone())
            .unwrap_or_default();
        let files = resolve_include(&path, Path::new(&base), &self.include_dirs)
            .map_err(|m| Error::new(t.span, m))?;
        // included files go in reverse so the first one is parsed first
        let rest: Vec<Token> = self.la.drain(..).collect();
        if !rest.is_empty() {
            let depth = self.frames.last().map(|f| f.macro_depth).unwrap_or(0);
            self.frames.push(Frame {
                toks: Rc::new(rest),
                pos: 0,
                macro_depth: depth,
            });
        }
        for f in files.into_iter().rev() {
            let text = std::fs::read_to_string(&f).map_err(|e| {
                Error::new(
                    t.span,
                    format!("Could not process include of {}: {e}", f.display()),
                )
            })?;
            let id = self.srcmap.add(f.display().to_string(), text.clone());
            let toks = lex(id, &text).map_err(|e| Error::new(e.span, e.msg))?;
            let mut toks: Vec<Token> = toks.into_iter().filter(|t| t.tok != Tok::Eof).collect();
            toks.push(Token {
                tok: Tok::Newline,
                span: t.span,
                space_before: true,
            });
            self.frames.push(Frame {
                toks: Rc::new(toks),
                pos: 0,
                macro_depth: 0,
            });
        }
        self.include_depth += 1;
        Ok(())
    }

    fn family_opt(&mut self) -> Result<Option<Family>> {
        if let Some(w) = self.peek_word()? {
            if let Some(f) = Family::parse(&w) {
                // `table ip` alone would be a table named "ip"; the family applies when another
                // identifier follows.
                if matches!(self.peek_n(1)?, Tok::Word(_) | Tok::Str(_)) {
                    self.next_tok()?;
                    return Ok(Some(f));
                }
            }
        }
        Ok(None)
    }

    fn table_ref(&mut self) -> Result<TableRef> {
        let fam = self.family_opt()?.unwrap_or(Family::Ip);
        let (name, span) = self.ident("table name")?;
        Ok(TableRef {
            family: fam,
            name,
            span,
        })
    }

    fn verb_cmd(&mut self, verb: Verb, out: &mut Vec<Cmd>) -> Result<()> {
        let t = self.peek_tok()?.clone();
        let Tok::Word(obj) = &t.tok else {
            return self.unexpected("object");
        };
        let obj = obj.clone();
        if verb == Verb::List
            || (verb == Verb::Reset && !matches!(obj.as_str(), "rule" | "element"))
        {
            while !matches!(self.peek()?, Tok::Newline | Tok::Semi | Tok::Eof) {
                self.next_tok()?;
            }
            out.push(Cmd::Noop);
            return Ok(());
        }
        self.next_tok()?;
        match obj.as_str() {
            "ruleset" => {
                if verb != Verb::Flush {
                    return Err(Error::new(t.span, "syntax error, unexpected ruleset"));
                }
                let _ = self.family_opt_alone()?;
                out.push(Cmd::ByName {
                    verb,
                    what: "ruleset".into(),
                    table: None,
                    name: None,
                    handle: None,
                    span: t.span,
                });
                Ok(())
            }
            "table" => {
                if matches!(verb, Verb::Delete | Verb::Destroy) && self.handle_follows_table()? {
                    let fam = self.family_opt_alone()?.unwrap_or(Family::Ip);
                    self.expect_word("handle")?;
                    let (h, sp) = self.number("handle")?;
                    out.push(Cmd::ByName {
                        verb,
                        what: "table".into(),
                        table: Some(TableRef {
                            family: fam,
                            name: String::new(),
                            span: sp,
                        }),
                        name: None,
                        handle: Some(h),
                        span: sp,
                    });
                    return Ok(());
                }
                let table = self.table_ref()?;
                match verb {
                    Verb::Add | Verb::Create => {
                        let mut flags = vec![];
                        let mut comment = None;
                        let has_block = matches!(self.peek()?, Tok::LBrace);
                        if has_block {
                            out.push(Cmd::Table {
                                verb: verb.clone(),
                                table: table.clone(),
                                flags: vec![],
                                comment: None,
                            });
                            self.table_block(&table, out, &mut flags, &mut comment)?;
                            // apply flags/comment set inside the block
                            if let Some(Cmd::Table {
                                flags: f,
                                comment: c,
                                ..
                            }) = out
                                .iter_mut()
                                .rev()
                                .find(|c| matches!(c, Cmd::Table { table: tr, .. } if *tr == table))
                            {
                                *f = flags;
                                *c = comment;
                            }
                        } else {
                            out.push(Cmd::Table {
                                verb,
                                table,
                                flags,
                                comment,
                            });
                        }
                        Ok(())
                    }
                    _ => {
                        out.push(Cmd::ByName {
                            verb,
                            what: "table".into(),
                            table: Some(table.clone()),
                            name: None,
                            handle: None,
                            span: table.span,
                        });
                        Ok(())
                    }
                }
            }
            "chain" => {
                let table = self.table_ref()?;
                if matches!(verb, Verb::Delete | Verb::Destroy) {
                    if let Some(cmd) = self.by_handle(&verb, "chain", &table)? {
                        out.push(cmd);
                        return Ok(());
                    }
                }
                let (name, span) = self.chain_ident()?;
                match verb {
                    Verb::Add | Verb::Create => {
                        let mut chain = Chain {
                            name,
                            hook: None,
                            comment: None,
                            rules: vec![],
                            handle: 0,
                            span,
                        };
                        if matches!(self.peek()?, Tok::LBrace) {
                            self.chain_block(&table, &mut chain, out)?;
                        }
                        out.push(Cmd::Chain { verb, table, chain });
                        Ok(())
                    }
                    _ => {
                        out.push(Cmd::ByName {
                            verb,
                            what: "chain".into(),
                            table: Some(table),
                            name: Some(name),
                            handle: None,
                            span,
                        });
                        Ok(())
                    }
                }
            }
            "rule" => {
                let table = self.table_ref()?;
                let (chain, _) = self.chain_ident()?;
                let mut pos = RulePos::End;
                if self.is_word("handle")? || self.is_word("position")? || self.is_word("index")? {
                    let kw = self.next_tok()?;
                    let (n, _) = self.number("number")?;
                    pos = if matches!(&kw.tok, Tok::Word(w) if w == "index") {
                        RulePos::Index(n)
                    } else {
                        RulePos::Handle(n)
                    };
                }
                if matches!(verb, Verb::Delete | Verb::Destroy) {
                    let sp = self.span()?;
                    out.push(Cmd::ByName {
                        verb,
                        what: "rule".into(),
                        table: Some(table),
                        name: Some(chain),
                        handle: match pos {
                            RulePos::Handle(h) => Some(h),
                            _ => None,
                        },
                        span: sp,
                    });
                    return Ok(());
                }
                let rule = self.rule(&table)?;
                out.push(Cmd::Rule {
                    verb,
                    table,
                    chain,
                    pos,
                    rule,
                });
                Ok(())
            }
            "set" | "map" => {
                let table = self.table_ref()?;
                if matches!(verb, Verb::Delete | Verb::Destroy) {
                    if let Some(cmd) = self.by_handle(&verb, &obj, &table)? {
                        out.push(cmd);
                        return Ok(());
                    }
                }
                let (name, span) = self.ident("set name")?;
                match verb {
                    Verb::Add | Verb::Create => {
                        let set = self.set_decl(name, span, obj == "map", false)?;
                        out.push(Cmd::Set {
                            verb,
                            table,
                            set: Box::new(set),
                        });
                        Ok(())
                    }
                    _ => {
                        out.push(Cmd::ByName {
                            verb,
                            what: obj.clone(),
                            table: Some(table),
                            name: Some(name),
                            handle: None,
                            span,
                        });
                        Ok(())
                    }
                }
            }
            "element" => {
                let table = self.table_ref()?;
                let (set, span) = self.ident("set name")?;
                let sp = self.span()?;
                let e = self.set_expr()?;
                let ExprKind::Set(elems) = e.kind else {
                    return Err(Error::new(sp, "syntax error, expecting '{'"));
                };
                out.push(Cmd::Element {
                    verb,
                    table,
                    set,
                    elems,
                    span,
                });
                Ok(())
            }
            "flowtable" => {
                let table = self.table_ref()?;
                if matches!(verb, Verb::Delete | Verb::Destroy) {
                    if let Some(cmd) = self.by_handle(&verb, &obj, &table)? {
                        out.push(cmd);
                        return Ok(());
                    }
                }
                let ft = self.flowtable_decl(false)?;
                out.push(Cmd::Flowtable { verb, table, ft });
                Ok(())
            }
            "counter" | "quota" | "limit" | "secmark" | "synproxy" | "ct" | "tunnel"
            | "counters" | "quotas" | "limits" => {
                let kind = if obj == "ct" {
                    self.ct_obj_kind()?
                } else {
                    obj.trim_end_matches('s').to_string()
                };
                let table = self.table_ref()?;
                if matches!(verb, Verb::Delete | Verb::Destroy | Verb::Reset) {
                    if let Some(cmd) = self.by_handle(&verb, &kind, &table)? {
                        out.push(cmd);
                        return Ok(());
                    }
                }
                let (name, span) = self.ident("object name")?;
                match verb {
                    Verb::Add | Verb::Create => {
                        let block = matches!(self.peek()?, Tok::LBrace);
                        let obj = self.obj_body(&kind, name, span, block)?;
                        out.push(Cmd::Obj { verb, table, obj });
                    }
                    _ => out.push(Cmd::ByName {
                        verb,
                        what: kind,
                        table: Some(table),
                        name: Some(name),
                        handle: None,
                        span,
                    }),
                }
                Ok(())
            }
            _ => Err(Error::new(
                t.span,
                format!("syntax error, unexpected {obj}"),
            )),
        }
    }

    fn handle_follows_table(&mut self) -> Result<bool> {
        Ok(self.is_word("handle")? || self.is_word_n(1, "handle")?)
    }

    fn family_opt_alone(&mut self) -> Result<Option<Family>> {
        if let Some(w) = self.peek_word()? {
            if let Some(f) = Family::parse(&w) {
                self.next_tok()?;
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    // ---- blocks --------------------------------------------------------------------------

    fn table_block(
        &mut self,
        table: &TableRef,
        out: &mut Vec<Cmd>,
        flags: &mut Vec<String>,
        comment: &mut Option<String>,
    ) -> Result<()> {
        self.expect(&Tok::LBrace, "'{'")?;
        self.enter()?;
        self.scopes.push(HashMap::new());
        while let Some((w, _)) = self.block_word("table object")? {
            match w.as_str() {
                "define" | "redefine" => {
                    self.next_tok()?;
                    self.define(w == "redefine")?;
                }
                "undefine" => {
                    self.next_tok()?;
                    let (name, sp) = self.ident("identifier")?;
                    if self
                        .scopes
                        .iter_mut()
                        .rev()
                        .find_map(|s| s.remove(&name))
                        .is_none()
                    {
                        return Err(Error::new(sp, format!("undefined symbol '{name}'")));
                    }
                }
                "include" => {
                    self.next_tok()?;
                    self.include()?;
                }
                "flags" => {
                    self.next_tok()?;
                    loop {
                        let (f, sp) = self.ident("table flag")?;
                        if !matches!(f.as_str(), "dormant" | "owner" | "persist") {
                            return Err(Error::new(sp, format!("unknown table option {f}")));
                        }
                        if !flags.contains(&f) {
                            flags.push(f);
                        }
                        if !self.eat(&Tok::Comma)? {
                            break;
                        }
                    }
                    self.end_of_stmt()?;
                }
                "comment" => {
                    self.next_tok()?;
                    *comment = Some(self.comment_str()?);
                    self.end_of_stmt()?;
                }
                "chain" => {
                    self.next_tok()?;
                    let (name, span) = self.chain_ident()?;
                    let mut chain = Chain {
                        name,
                        hook: None,
                        comment: None,
                        rules: vec![],
                        handle: 0,
                        span,
                    };
                    let mut rules = vec![];
                    self.chain_block(table, &mut chain, &mut rules)?;
                    out.push(Cmd::Chain {
                        verb: Verb::Add,
                        table: table.clone(),
                        chain,
                    });
                    out.append(&mut rules);
                    out.append(&mut self.pending);
                }
                "set" | "map" => {
                    self.next_tok()?;
                    let (name, span) = self.ident("set name")?;
                    let set = self.set_decl(name, span, w == "map", true)?;
                    out.push(Cmd::Set {
                        verb: Verb::Add,
                        table: table.clone(),
                        set: Box::new(set),
                    });
                }
                "flowtable" => {
                    self.next_tok()?;
                    let ft = self.flowtable_decl(true)?;
                    out.push(Cmd::Flowtable {
                        verb: Verb::Add,
                        table: table.clone(),
                        ft,
                    });
                }
                "counter" | "quota" | "limit" | "secmark" | "synproxy" | "ct" | "tunnel" => {
                    self.next_tok()?;
                    let kind = if w == "ct" {
                        self.ct_obj_kind()?
                    } else {
                        w.clone()
                    };
                    let (name, span) = self.ident("object name")?;
                    let obj = self.obj_body(&kind, name, span, true)?;
                    out.push(Cmd::Obj {
                        verb: Verb::Add,
                        table: table.clone(),
                        obj,
                    });
                }
                _ => return self.unexpected("table object"),
            }
        }
        self.scopes.pop();
        self.leave();
        Ok(())
    }

    fn comment_str(&mut self) -> Result<String> {
        let t = self.peek_tok()?.clone();
        match t.tok {
            Tok::Str(s) | Tok::Word(s) => {
                self.next_tok()?;
                if s.len() > 128 {
                    return Err(Error::new(t.span, "comment too long (128 bytes max)"));
                }
                Ok(s)
            }
            _ => self.unexpected("string"),
        }
    }

    fn chain_block(
        &mut self,
        table: &TableRef,
        chain: &mut Chain,
        out: &mut Vec<Cmd>,
    ) -> Result<()> {
        self.expect(&Tok::LBrace, "'{'")?;
        self.enter()?;
        self.scopes.push(HashMap::new());
        loop {
            self.skip_seps()?;
            let t = self.peek_tok()?.clone();
            match &t.tok {
                Tok::RBrace => {
                    self.next_tok()?;
                    break;
                }
                Tok::Word(w) if w == "type" && chain.hook.is_none() && chain.rules.is_empty() => {
                    self.next_tok()?;
                    let hook = self.hook_spec(t.span)?;
                    chain.hook = Some(hook);
                    self.end_of_stmt()?;
                }
                Tok::Word(w) if w == "policy" && self.peek_policy_value()? => {
                    self.next_tok()?;
                    let (p, sp) = self.ident("policy")?;
                    let p = p.to_ascii_lowercase();
                    if p != "accept" && p != "drop" {
                        return Err(Error::new(sp, format!("Could not parse policy: {p}")));
                    }
                    match &mut chain.hook {
                        Some(h) => h.policy = Some(p),
                        None => return Err(Error::new(sp, "policy is only valid on base chains")),
                    }
                    self.end_of_stmt()?;
                }
                Tok::Word(w)
                    if w == "comment"
                        && matches!(self.peek_n(1)?, Tok::Str(_))
                        && matches!(self.peek_n(2)?, Tok::Newline | Tok::Semi | Tok::RBrace) =>
                {
                    self.next_tok()?;
                    chain.comment = Some(self.comment_str()?);
                    self.end_of_stmt()?;
                }
                Tok::Word(w) if w == "devices" && matches!(self.peek_n(1)?, Tok::Eq) => {
                    self.next_tok()?;
                    self.next_tok()?;
                    let devs = self.device_list()?;
                    if let Some(h) = &mut chain.hook {
                        h.devices = devs;
                    }
                    self.end_of_stmt()?;
                }
                Tok::Word(w) if w == "define" || w == "redefine" => {
                    self.next_tok()?;
                    self.define(w == "redefine")?;
                }
                Tok::Word(w) if w == "include" => {
                    self.next_tok()?;
                    self.include()?;
                }
                _ => {
                    let rule = self.rule(table)?;
                    out.push(Cmd::Rule {
                        verb: Verb::Add,
                        table: table.clone(),
                        chain: chain.name.clone(),
                        pos: RulePos::End,
                        rule,
                    });
                    out.append(&mut self.pending);
                    self.end_of_stmt()?;
                }
            }
        }
        self.scopes.pop();
        self.leave();
        Ok(())
    }

    fn peek_policy_value(&mut self) -> Result<bool> {
        Ok(matches!(self.peek_n(1)?, Tok::Word(_))
            && matches!(self.peek_n(2)?, Tok::Newline | Tok::Semi | Tok::RBrace))
    }

    fn hook_spec(&mut self, span: Span) -> Result<Hook> {
        let (kind, ksp) = self.ident("chain type")?;
        if !matches!(kind.as_str(), "filter" | "nat" | "route") {
            return Err(Error::new(ksp, format!("unknown chain type {kind}")));
        }
        self.expect_word("hook")?;
        let (hook, _) = self.ident("hook")?;
        let mut devices = vec![];
        if self.eat_word("device")? {
            devices = self.device_list()?;
        } else if self.is_word("devices")? {
            self.next_tok()?;
            self.expect(&Tok::Eq, "'='")?;
            devices = self.device_list()?;
        }
        self.expect_word("priority")?;
        let prio = self.prio()?;
        let mut policy = None;
        if matches!(self.peek()?, Tok::Semi) && self.is_word_n(1, "policy")? {
            self.next_tok()?;
            self.next_tok()?;
            let (p, sp) = self.ident("policy")?;
            let p = p.to_ascii_lowercase();
            if p != "accept" && p != "drop" {
                return Err(Error::new(sp, format!("Could not parse policy: {p}")));
            }
            policy = Some(p);
        }
        Ok(Hook {
            kind,
            hook,
            prio,
            devices,
            policy,
            span,
        })
    }

    fn device_list(&mut self) -> Result<Vec<String>> {
        let mut devs = vec![];
        if self.eat(&Tok::LBrace)? {
            loop {
                self.skip_newlines()?;
                if self.eat(&Tok::RBrace)? {
                    break;
                }
                let (d, _) = self.ident("device name")?;
                devs.push(d);
                self.skip_newlines()?;
                if !self.eat(&Tok::Comma)? {
                    self.skip_newlines()?;
                    self.expect(&Tok::RBrace, "'}'")?;
                    break;
                }
            }
        } else {
            devs.push(self.ident("device name")?.0);
        }
        Ok(devs)
    }

    fn prio(&mut self) -> Result<Prio> {
        let neg = self.eat(&Tok::Dash)?;
        let t = self.next_tok()?;
        let base = match &t.tok {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => s.clone(),
            _ => {
                return Err(Error::new(
                    t.span,
                    format!(
                        "syntax error, unexpected {}, expecting priority",
                        t.tok.describe()
                    ),
                ))
            }
        };
        if let Some(n) = parse_i64(&base) {
            let v = if neg { -n } else { n };
            if v < i32::MIN as i64 || v > i32::MAX as i64 {
                return Err(Error::new(t.span, "priority value out of range"));
            }
            return Ok(Prio::Num(v as i32));
        }
        if neg {
            return Err(Error::new(
                t.span,
                format!("'{base}' is not a valid priority"),
            ));
        }
        // `srcnat + 10`, `filter - 5`, also written `filter-5`? nft needs spaces.
        let mut off = 0i64;
        if matches!(self.peek()?, Tok::Plus | Tok::Dash) {
            let sign = if self.next_tok()?.tok == Tok::Plus {
                1
            } else {
                -1
            };
            let (n, _) = self.number("number")?;
            // nft keeps 32 bits of the sum, wrapping as its listing shows
            off = (n as i64).wrapping_mul(sign);
        }
        Ok(Prio::Named(base, off as i32))
    }

    /// The `ct` object kind after `ct`: `ct helper`, `ct timeout` or `ct expectation`.
    fn ct_obj_kind(&mut self) -> Result<String> {
        let (k, sp) = self.ident("helper, timeout or expectation")?;
        if !matches!(k.as_str(), "helper" | "timeout" | "expectation") {
            return Err(Error::new(sp, format!("syntax error, unexpected {k}")));
        }
        Ok(format!("ct {k}"))
    }

    /// The set or map `name`, with its `{ ... }` block: one must follow when `block`, else
    /// one may.
    fn set_decl(&mut self, name: String, span: Span, is_map: bool, block: bool) -> Result<Set> {
        let mut set = Set {
            name,
            is_map,
            span,
            ..Default::default()
        };
        if block || matches!(self.peek()?, Tok::LBrace) {
            self.set_block(&mut set)?;
        }
        Ok(set)
    }

    /// A flowtable's name and its `{ ... }` block: one must follow when `block`, else one may.
    fn flowtable_decl(&mut self, block: bool) -> Result<Flowtable> {
        let (name, span) = self.ident("flowtable name")?;
        let mut ft = Flowtable {
            name,
            span,
            ..Default::default()
        };
        if block || matches!(self.peek()?, Tok::LBrace) {
            self.flowtable_block(&mut ft)?;
        }
        Ok(ft)
    }

    fn set_block(&mut self, set: &mut Set) -> Result<()> {
        self.expect(&Tok::LBrace, "'{'")?;
        self.enter()?;
        while let Some((w, span)) = self.block_word("set option")? {
            self.next_tok()?;
            match w.as_str() {
                "type" => {
                    let mut types = vec![self.type_name()?];
                    while self.eat(&Tok::Dot)? {
                        types.push(self.type_name()?);
                    }
                    set.key = Some(KeySpec::Types(types));
                    if self.eat(&Tok::Colon)? {
                        if set.is_map {
                            let (k, sp) = self.ident("data type")?;
                            if matches!(
                                k.as_str(),
                                "counter" | "quota" | "limit" | "secmark" | "synproxy"
                            ) {
                                set.obj_map = Some(k);
                            } else if k == "ct" {
                                let (k2, _) = self.ident("helper")?;
                                set.obj_map = Some(format!("ct {k2}"));
                            } else if k == "interval" {
                                let mut types = vec![self.type_name()?];
                                while self.eat(&Tok::Dot)? {
                                    types.push(self.type_name()?);
                                }
                                set.data = Some(KeySpec::Types(types));
                                set.data_interval = true;
                                if !set.flags.contains(&"interval".to_string()) {
                                    set.flags.push("interval".into());
                                }
                            } else {
                                let mut types = vec![k];
                                while self.eat(&Tok::Dot)? {
                                    types.push(self.type_name()?);
                                }
                                let _ = sp;
                                set.data = Some(KeySpec::Types(types));
                            }
                        } else {
                            return Err(Error::new(
                                span,
                                "set definition has conflicting key (map declared as set?)",
                            ));
                        }
                    }
                }
                "typeof" => {
                    let e = self.typeof_expr()?;
                    set.key = Some(KeySpec::Typeof(e));
                    if self.eat(&Tok::Colon)? {
                        let obj_kind = match self.peek_word()?.as_deref() {
                            Some(
                                k @ ("counter" | "quota" | "limit" | "secmark" | "synproxy"
                                | "tunnel"),
                            ) => Some(k.to_string()),
                            Some("ct") => match self.peek_n(1)? {
                                Tok::Word(k)
                                    if matches!(
                                        k.as_str(),
                                        "helper" | "timeout" | "expectation"
                                    ) =>
                                {
                                    Some(format!("ct {k}"))
                                }
                                _ => None,
                            },
                            _ => None,
                        };
                        if let Some(k) = obj_kind {
                            for _ in 0..k.split(' ').count() {
                                self.next_tok()?;
                            }
                            set.obj_map = Some(k);
                        } else if self.is_word("queue")? {
                            // queue numbers: printed as `queue`, typed as a 16-bit integer
                            self.next_tok()?;
                            set.data = Some(KeySpec::Types(vec!["queue".into()]));
                        } else if self.is_word("verdict")? {
                            self.next_tok()?;
                            set.data = Some(KeySpec::Types(vec!["verdict".into()]));
                        } else if self.is_word("interval")? {
                            self.next_tok()?;
                            set.data = Some(KeySpec::Typeof(self.typeof_expr()?));
                            set.data_interval = true;
                            if !set.flags.contains(&"interval".to_string()) {
                                set.flags.push("interval".into());
                            }
                        } else {
                            set.data = Some(KeySpec::Typeof(self.typeof_expr()?));
                        }
                    }
                }
                "flags" => loop {
                    let (f, sp) = self.ident("set flag")?;
                    if !matches!(
                        f.as_str(),
                        "constant" | "interval" | "timeout" | "dynamic" | "eval"
                    ) {
                        return Err(Error::new(sp, format!("syntax error, unexpected {f}")));
                    }
                    if !set.flags.contains(&f) {
                        set.flags.push(f);
                    }
                    if !self.eat(&Tok::Comma)? {
                        break;
                    }
                },
                "timeout" => set.timeout = Some(self.time_arg()?),
                "gc-interval" => set.gc_interval = Some(self.time_arg()?),
                "size" => set.size = Some(self.number("size")?.0),
                "policy" => {
                    let (p, sp) = self.ident("policy")?;
                    if p != "performance" && p != "memory" {
                        return Err(Error::new(sp, format!("syntax error, unexpected {p}")));
                    }
                    set.policy = Some(p);
                }
                "auto-merge" => set.auto_merge = true,
                "comment" => set.comment = Some(self.comment_str()?),
                "elements" => {
                    self.expect(&Tok::Eq, "'='")?;
                    let sp = self.span()?;
                    let e = self.set_expr()?;
                    match e.kind {
                        ExprKind::Set(els) => set.elements.extend(els),
                        _ => return Err(Error::new(sp, "syntax error, expecting '{'")),
                    }
                }
                "counter" | "quota" | "limit" | "last" | "ct" => {
                    // per-element statements: `counter`, `quota 10 mbytes`, several on a line
                    let mut kw = w.clone();
                    let mut sp = span;
                    loop {
                        let st = self.elem_stmt_after_kw(&kw, sp)?;
                        set.stmts.push(st);
                        match self.peek_word()? {
                            Some(k)
                                if is_elem_stmt_kw(&k)
                                    && (k != "ct" || self.is_word_n(1, "count")?) =>
                            {
                                sp = self.next_tok()?.span;
                                kw = k;
                            }
                            _ => break,
                        }
                    }
                }
                _ => return Err(Error::new(span, format!("syntax error, unexpected {w}"))),
            }
            self.end_of_stmt()?;
        }
        self.leave();
        Ok(())
    }

    fn type_name(&mut self) -> Result<String> {
        let (n, _) = self.ident("type")?;
        Ok(n)
    }

    fn typeof_expr(&mut self) -> Result<Expr> {
        let first = self.primary(Mode::Lhs)?;
        let mut items = vec![first];
        while matches!(self.peek()?, Tok::Dot) {
            self.next_tok()?;
            items.push(self.primary(Mode::Lhs)?);
        }
        if items.len() == 1 {
            Ok(items.pop().expect("one"))
        } else {
            let sp = items[0].span.to(items[items.len() - 1].span);
            Ok(Expr::new(ExprKind::Concat(items), sp))
        }
    }

    fn time_arg(&mut self) -> Result<u64> {
        let t = self.next_tok()?;
        let text = match &t.tok {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => s.clone(),
            _ => {
                return Err(Error::new(
                    t.span,
                    format!(
                        "syntax error, unexpected {}, expecting time",
                        t.tok.describe()
                    ),
                ))
            }
        };
        parse_time_ms(&text).ok_or_else(|| {
            Error::new(
                t.span,
                format!("Wrong time format, expecting: 1d2h3m4s5ms ({text})"),
            )
        })
    }

    fn flowtable_block(&mut self, ft: &mut Flowtable) -> Result<()> {
        self.expect(&Tok::LBrace, "'{'")?;
        self.enter()?;
        while let Some((w, span)) = self.block_word("flowtable option")? {
            self.next_tok()?;
            match w.as_str() {
                "hook" => {
                    let (h, _) = self.ident("hook")?;
                    ft.hook = Some(h);
                    self.expect_word("priority")?;
                    ft.prio = Some(self.prio()?);
                }
                "devices" => {
                    self.expect(&Tok::Eq, "'='")?;
                    ft.devices = self.device_list()?;
                }
                "counter" => ft.counter = true,
                "flags" => loop {
                    let (f, sp) = self.ident("flowtable flag")?;
                    if f != "offload" {
                        return Err(Error::new(sp, format!("syntax error, unexpected {f}")));
                    }
                    ft.offload = true;
                    if !self.eat(&Tok::Comma)? {
                        break;
                    }
                },
                _ => return Err(Error::new(span, format!("syntax error, unexpected {w}"))),
            }
            self.end_of_stmt()?;
        }
        self.leave();
        Ok(())
    }

    /// The lines of an object's block up to its `}`: `comment` anywhere, the rest by `opt`,
    /// which reads an option it knows and returns whether it did; `expecting` names what an
    /// unknown word should have been.
    fn obj_opts(
        &mut self,
        expecting: &str,
        comment: &mut Option<String>,
        mut opt: impl FnMut(&mut Self) -> Result<bool>,
    ) -> Result<()> {
        while !matches!(self.peek()?, Tok::RBrace | Tok::Eof) {
            self.skip_seps()?;
            if opt(self)? {
            } else if self.eat_word("comment")? {
                *comment = Some(self.comment_str()?);
            } else if matches!(self.peek()?, Tok::RBrace) {
                break;
            } else {
                return self.unexpected(expecting);
            }
            self.skip_seps()?;
        }
        Ok(())
    }

    fn obj_body(&mut self, kind: &str, name: String, span: Span, block: bool) -> Result<Obj> {
        let mut comment = None;
        let body;
        if block {
            self.expect(&Tok::LBrace, "'{'")?;
            self.enter()?;
        }
        if block {
            // outside a block the newline ends the command
            self.skip_seps()?;
        }
        if block && self.is_word("comment")? {
            self.next_tok()?;
            comment = Some(self.comment_str()?);
            self.skip_seps()?;
        }
        match kind {
            "counter" => {
                let mut packets = 0;
                let mut bytes = 0;
                if block {
                    self.obj_opts("packets or bytes", &mut comment, |p| {
                        if p.eat_word("packets")? {
                            packets = p.number("number")?.0;
                        } else if p.eat_word("bytes")? {
                            bytes = p.number("number")?.0;
                        } else {
                            return Ok(false);
                        }
                        Ok(true)
                    })?;
                }
                body = ObjBody::Counter { packets, bytes };
            }
            "quota" => {
                // `until` is the default direction and lists as nothing
                let over = if self.eat_word("over")? {
                    true
                } else {
                    self.eat_word("until")?;
                    false
                };
                let (bytes, used) = self.quota_amounts()?;
                body = ObjBody::Quota { over, bytes, used };
            }
            "limit" => {
                let l = self.limit_body()?;
                body = ObjBody::Limit(l);
            }
            "secmark" => {
                let s = self.string_arg("secmark context")?;
                body = ObjBody::Secmark(s);
            }
            "synproxy" => {
                let (mss, wscale, flags) = self.synproxy_args()?;
                body = ObjBody::Synproxy {
                    mss: mss.unwrap_or(0),
                    wscale: wscale.unwrap_or(0),
                    flags,
                };
            }
            "tunnel" => {
                body = ObjBody::Tunnel(self.tunnel_obj_body()?);
            }
            "ct helper" => {
                let mut hname = String::new();
                let mut proto = String::new();
                let mut l3 = None;
                self.obj_opts("type", &mut comment, |p| {
                    if p.eat_word("type")? {
                        hname = p.string_arg("helper name")?;
                        p.expect_word("protocol")?;
                        proto = p.string_arg("protocol")?;
                    } else if p.eat_word("l3proto")? {
                        l3 = Some(p.string_arg("family")?);
                    } else {
                        return Ok(false);
                    }
                    Ok(true)
                })?;
                body = ObjBody::CtHelper {
                    name: hname,
                    proto,
                    l3proto: l3,
                };
            }
            "ct timeout" => {
                let mut proto = String::new();
                let mut l3 = None;
                let mut policy = vec![];
                self.obj_opts("protocol", &mut comment, |p| {
                    if p.eat_word("protocol")? {
                        proto = p.string_arg("protocol")?;
                    } else if p.eat_word("l3proto")? {
                        l3 = Some(p.string_arg("family")?);
                    } else if p.eat_word("policy")? {
                        p.expect(&Tok::Eq, "'='")?;
                        p.expect(&Tok::LBrace, "'{'")?;
                        loop {
                            p.skip_newlines()?;
                            if p.eat(&Tok::RBrace)? {
                                break;
                            }
                            let (st, _) = p.ident("state")?;
                            p.expect(&Tok::Colon, "':'")?;
                            let v = p.time_arg()?;
                            policy.push((st, v / 1000));
                            p.skip_newlines()?;
                            if !p.eat(&Tok::Comma)? {
                                p.skip_newlines()?;
                                p.expect(&Tok::RBrace, "'}'")?;
                                break;
                            }
                        }
                    } else {
                        return Ok(false);
                    }
                    Ok(true)
                })?;
                body = ObjBody::CtTimeout {
                    proto,
                    l3proto: l3,
                    policy,
                };
            }
            "ct expectation" => {
                let mut proto = String::new();
                let mut l3 = None;
                let mut fields: Vec<(String, u64)> = vec![];
                self.obj_opts("protocol", &mut comment, |p| {
                    if p.eat_word("protocol")? {
                        proto = p.string_arg("protocol")?;
                    } else if p.eat_word("l3proto")? {
                        l3 = Some(p.string_arg("family")?);
                    } else if p.eat_word("dport")? {
                        fields.push(("dport".into(), p.number("port")?.0));
                    } else if p.eat_word("timeout")? {
                        fields.push(("timeout".into(), p.time_arg()?));
                    } else if p.eat_word("size")? {
                        fields.push(("size".into(), p.number("size")?.0));
                    } else {
                        return Ok(false);
                    }
                    Ok(true)
                })?;
                let get = |k: &str| {
                    fields
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| *v)
                        .unwrap_or(0)
                };
                body = ObjBody::CtExpect {
                    proto,
                    dport: get("dport") as u32,
                    timeout: get("timeout"),
                    size: get("size") as u32,
                    l3proto: l3,
                };
            }
            _ => return Err(Error::new(span, format!("unknown object type {kind}"))),
        }
        if block {
            self.skip_seps()?;
            if self.is_word("comment")? {
                self.next_tok()?;
                comment = Some(self.comment_str()?);
                self.skip_seps()?;
            }
            self.expect(&Tok::RBrace, "'}'")?;
            self.leave();
        }
        Ok(Obj {
            kind: kind.to_string(),
            name,
            body,
            comment,
            handle: 0,
            span,
        })
    }

    /// The body of a tunnel object: `id`, outer addresses, ports, tos, ttl, and the vxlan,
    /// erspan or geneve options.
    fn tunnel_obj_body(&mut self) -> Result<TunnelObj> {
        let mut t = TunnelObj::default();
        let small = |p: &mut Self, what: &str, max: u64| -> Result<u64> {
            let (n, sp) = p.number(what)?;
            if n > max {
                return Err(Error::new(sp, format!("{what} out of range")));
            }
            Ok(n)
        };
        loop {
            self.skip_seps()?;
            let tok = self.peek_tok()?.clone();
            let Tok::Word(w) = &tok.tok else { break };
            match w.as_str() {
                "id" => {
                    self.next_tok()?;
                    t.id = small(self, "tunnel id", u32::MAX as u64)? as u32;
                }
                "ip" | "ip6" => {
                    self.next_tok()?;
                    let (dir, dsp) = self.ident("saddr or daddr")?;
                    let (dt, bits) = if w == "ip" {
                        (Dt::Ipv4Addr, 32)
                    } else {
                        (Dt::Ipv6Addr, 128)
                    };
                    let at = self.next_tok()?;
                    let Tok::Word(a) = &at.tok else {
                        return Err(Error::new(at.span, "syntax error, expecting address"));
                    };
                    let v = dt.parse(a, bits).map_err(|m| Error::new(at.span, m))?;
                    let addr = (w == "ip6", dt.print(&v, bits, &Default::default()));
                    match dir.as_str() {
                        "saddr" => t.src = Some(addr),
                        "daddr" => t.dst = Some(addr),
                        _ => {
                            return Err(Error::new(dsp, format!("syntax error, unexpected {dir}")))
                        }
                    }
                }
                "sport" => {
                    self.next_tok()?;
                    t.sport = small(self, "port", 65535)? as u16;
                }
                "dport" => {
                    self.next_tok()?;
                    t.dport = small(self, "port", 65535)? as u16;
                }
                "tos" => {
                    self.next_tok()?;
                    t.tos = small(self, "tos", 255)? as u8;
                }
                "ttl" => {
                    self.next_tok()?;
                    t.ttl = small(self, "ttl", 255)? as u8;
                }
                "vxlan" | "erspan" | "geneve" => {
                    let kind = w.clone();
                    self.next_tok()?;
                    self.expect(&Tok::LBrace, "'{'")?;
                    t.opts = match kind.as_str() {
                        "vxlan" => TunnelOpts::Vxlan { gbp: 0 },
                        "erspan" => TunnelOpts::Erspan {
                            version: 0,
                            index: 0,
                            egress: false,
                            hwid: 0,
                        },
                        _ => TunnelOpts::Geneve(vec![]),
                    };
                    loop {
                        self.skip_seps()?;
                        if self.eat(&Tok::RBrace)? {
                            break;
                        }
                        self.tunnel_opt(&mut t.opts)?;
                    }
                }
                _ => break,
            }
        }
        Ok(t)
    }

    /// One option of a tunnel's vxlan, erspan or geneve block.
    fn tunnel_opt(&mut self, opts: &mut TunnelOpts) -> Result<()> {
        let (w, sp) = self.ident("tunnel option")?;
        match (opts, w.as_str()) {
            (TunnelOpts::Vxlan { gbp }, "gbp") => *gbp = self.number("number")?.0 as u32,
            (TunnelOpts::Erspan { version, .. }, "version") => {
                *version = self.number("number")?.0 as u32
            }
            (TunnelOpts::Erspan { index, .. }, "index") => *index = self.number("number")?.0 as u32,
            (TunnelOpts::Erspan { hwid, .. }, "id") => *hwid = self.number("number")?.0 as u32,
            (TunnelOpts::Erspan { egress, .. }, "direction") => {
                let (d, dsp) = self.ident("ingress or egress")?;
                *egress = match d.as_str() {
                    "ingress" => false,
                    "egress" => true,
                    _ => return Err(Error::new(dsp, format!("syntax error, unexpected {d}"))),
                };
            }
            (TunnelOpts::Geneve(list), "class") => {
                let (class, csp) = self.number("class")?;
                self.expect_word("opt-type")?;
                let (typ, tsp) = self.number("opt-type")?;
                self.expect_word("data")?;
                let dt = self.next_tok()?;
                let data = match &dt.tok {
                    Tok::Str(d) | Tok::Word(d) => d.clone(),
                    _ => return Err(Error::new(dt.span, "syntax error, expecting data")),
                };
                let hex = data.strip_prefix("0x").unwrap_or(&data);
                if hex.is_empty()
                    || hex.len() % 2 != 0
                    || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(Error::new(dt.span, "geneve data must be hex bytes (0x...)"));
                }
                let class = u16::try_from(class)
                    .map_err(|_| Error::new(csp, "geneve class out of range"))?;
                let typ = u8::try_from(typ)
                    .map_err(|_| Error::new(tsp, "geneve opt-type out of range"))?;
                let bytes = (0..hex.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                    .collect();
                list.push((class, typ, bytes));
            }
            _ => return Err(Error::new(sp, format!("syntax error, unexpected {w}"))),
        }
        Ok(())
    }

    fn quota_amounts(&mut self) -> Result<(u64, u64)> {
        let bytes = self.byte_amount()?;
        let mut used = 0;
        if self.eat_word("used")? {
            used = self.byte_amount()?;
        }
        Ok((bytes, used))
    }

    /// `25 mbytes`, `25mbytes`, `1024 bytes`
    fn byte_amount(&mut self) -> Result<u64> {
        let t = self.next_tok()?;
        let Tok::Word(w) = &t.tok else {
            return Err(Error::new(
                t.span,
                format!(
                    "syntax error, unexpected {}, expecting number",
                    t.tok.describe()
                ),
            ));
        };
        let (num, unit) = split_num_unit(w);
        let n = parse_u64(num)
            .ok_or_else(|| Error::new(t.span, format!("syntax error, unexpected {w}")))?;
        let unit = if unit.is_empty() {
            match self.peek()? {
                Tok::Word(u) if byte_unit(u).is_some() => {
                    let u = u.clone();
                    self.next_tok()?;
                    u
                }
                _ => return self.unexpected("bytes unit"),
            }
        } else {
            unit.to_string()
        };
        let mult = byte_unit(&unit).ok_or_else(|| {
            Error::new(
                t.span,
                format!("Wrong unit format, expecting bytes, kbytes or mbytes ({unit})"),
            )
        })?;
        n.checked_mul(mult)
            .ok_or_else(|| Error::new(t.span, "value out of range"))
    }

    // ---- rules and statements ------------------------------------------------------------

    pub fn rule(&mut self, table: &TableRef) -> Result<Rule> {
        let start = self.span()?;
        let mut stmts = Vec::new();
        let mut comment = None;
        loop {
            let t = self.peek_tok()?.clone();
            if is_keyword_end(&t.tok) {
                break;
            }
            if let Tok::Word(w) = &t.tok {
                if w == "comment" {
                    self.next_tok()?;
                    comment = Some(self.comment_str()?);
                    // a rule's comment comes last
                    let next = self.peek_tok()?.clone();
                    if !is_keyword_end(&next.tok) {
                        let want = if self.nesting == 0 {
                            "end of file or newline or semicolon"
                        } else {
                            "newline or semicolon"
                        };
                        return Err(Error::new(
                            next.span,
                            format!(
                                "syntax error, unexpected {}, expecting {want}",
                                nft_token_name(&next.tok)
                            ),
                        ));
                    }
                    continue;
                }
            }
            let st = self.stmt(table)?;
            stmts.push(st);
        }
        let end = self.span()?;
        if stmts.is_empty() && comment.is_none() {
            return self.unexpected("rule");
        }
        Ok(Rule {
            stmts,
            comment,
            span: start.to(Span {
                file: start.file,
                lo: start.lo,
                hi: end.lo.max(start.lo),
            }),
            handle: 0,
        })
    }

    fn stmt(&mut self, table: &TableRef) -> Result<Stmt> {
        let t = self.peek_tok()?.clone();
        let w = match &t.tok {
            Tok::Word(w) => w.clone(),
            Tok::At(_) | Tok::LParen | Tok::Str(_) | Tok::LBrace => String::new(),
            _ => return self.unexpected("statement"),
        };
        match w.as_str() {
            "accept" | "drop" | "continue" | "return" => {
                self.next_tok()?;
                let v = match w.as_str() {
                    "accept" => Verdict::Accept,
                    "drop" => Verdict::Drop,
                    "continue" => Verdict::Continue,
                    _ => Verdict::Return,
                };
                Ok(Stmt {
                    kind: StmtKind::Verdict(v),
                    span: t.span,
                })
            }
            "jump" | "goto" => {
                self.next_tok()?;
                if matches!(self.peek()?, Tok::LBrace) {
                    // an anonymous chain
                    let name = format!("__chain{}", self.anon_chains);
                    self.anon_chains += 1;
                    let mut chain = Chain {
                        name: name.clone(),
                        hook: None,
                        comment: None,
                        rules: vec![],
                        handle: 0,
                        span: t.span,
                    };
                    let mut rules = vec![];
                    self.chain_block(table, &mut chain, &mut rules)?;
                    self.pending.push(Cmd::Chain {
                        verb: Verb::Add,
                        table: table.clone(),
                        chain,
                    });
                    self.pending.append(&mut rules);
                    let v = if w == "jump" {
                        Verdict::Jump(name)
                    } else {
                        Verdict::Goto(name)
                    };
                    return Ok(Stmt {
                        kind: StmtKind::Verdict(v),
                        span: t.span,
                    });
                }
                let (c, sp) = self.chain_ident_expecting("'{'")?;
                let v = if w == "jump" {
                    Verdict::Jump(c)
                } else {
                    Verdict::Goto(c)
                };
                Ok(Stmt {
                    kind: StmtKind::Verdict(v),
                    span: t.span.to(sp),
                })
            }
            "counter" | "limit" | "quota" | "log" | "reject" | "snat" | "dnat" | "masquerade"
            | "redirect" | "notrack" | "flow" | "queue" | "dup" | "fwd" | "tproxy" | "synproxy"
            | "last" => {
                if w == "flow"
                    && !self.is_word_n(1, "add")?
                    && !self.is_word_n(1, "offload")?
                    && !matches!(self.peek_n(1)?, Tok::At(_))
                {
                    // `flow` may not start anything else
                    return self.unexpected("add");
                }
                self.next_tok()?;
                self.stmt_after_kw(&w, t.span)
            }
            // `reset tcp option mptcp`: removes an option from the packet
            "reset" if self.is_word_n(1, "tcp")? && self.is_word_n(2, "option")? => {
                self.next_tok()?;
                let sp = self.peek_tok()?.span;
                let Some(e) = self.selector("tcp", sp)? else {
                    return self.unexpected("tcp option");
                };
                if !matches!(&e.kind, ExprKind::TcpOpt { field: None, .. }) {
                    return Err(Error::new(
                        e.span,
                        "syntax error, reset takes a whole tcp option",
                    ));
                }
                let span = t.span.to(e.span);
                Ok(Stmt {
                    kind: StmtKind::Reset(e),
                    span,
                })
            }
            "add" | "update" | "delete" if matches!(self.peek_n(1)?, Tok::At(_)) => {
                self.next_tok()?;
                let op = match w.as_str() {
                    "add" => SetOp::Add,
                    "update" => SetOp::Update,
                    _ => SetOp::Delete,
                };
                let at = self.next_tok()?;
                let Tok::At(set) = at.tok else { unreachable!() };
                self.expect(&Tok::LBrace, "'{'")?;
                let key = self.expr(Mode::Stmt)?;
                let key = self.dynset_elem_opts(key)?;
                let mut stmts = vec![];
                let mut data = None;
                loop {
                    let t2 = self.peek_tok()?.clone();
                    match &t2.tok {
                        Tok::RBrace => {
                            self.next_tok()?;
                            break;
                        }
                        Tok::Colon => {
                            self.next_tok()?;
                            data = Some(self.expr(Mode::Stmt)?);
                        }
                        Tok::Word(kw)
                            if matches!(
                                kw.as_str(),
                                "counter" | "limit" | "quota" | "last" | "ct"
                            ) =>
                        {
                            let kw = kw.clone();
                            self.next_tok()?;
                            if kw == "ct" {
                                // `ct count over 2`
                                self.expect_word("count")?;
                                let over = self.eat_word("over")?;
                                let (n, _) = self.number("number")?;
                                stmts.push(Stmt {
                                    kind: StmtKind::Connlimit {
                                        over,
                                        count: n as u32,
                                    },
                                    span: t2.span,
                                });
                            } else {
                                stmts.push(self.stmt_after_kw(&kw, t2.span)?);
                            }
                        }
                        _ => return self.unexpected("'}'"),
                    }
                }
                Ok(Stmt {
                    kind: StmtKind::Dynset {
                        op,
                        set,
                        key,
                        stmts,
                        data,
                    },
                    span: t.span,
                })
            }
            "tunnel" if self.is_word_n(1, "name")? => {
                self.next_tok()?;
                self.next_tok()?;
                let name = self.expr(Mode::Stmt)?;
                Ok(Stmt {
                    kind: StmtKind::ObjRef {
                        kind: "tunnel".into(),
                        name,
                    },
                    span: t.span,
                })
            }
            "ct" if self.is_word_n(1, "count")? => {
                self.next_tok()?;
                self.next_tok()?;
                let over = self.eat_word("over")?;
                let (n, _) = self.number("number")?;
                Ok(Stmt {
                    kind: StmtKind::Connlimit {
                        over,
                        count: n as u32,
                    },
                    span: t.span,
                })
            }
            "ct" if matches!(self.peek_n(1)?, Tok::Word(k) if matches!(k.as_str(), "helper" | "timeout" | "expectation"))
                && self.is_word_n(2, "set")? =>
            {
                self.next_tok()?;
                let (k, _) = self.ident("key")?;
                self.next_tok()?;
                let name = self.expr(Mode::Stmt)?;
                Ok(Stmt {
                    kind: StmtKind::ObjRef {
                        kind: format!("ct {k}"),
                        name,
                    },
                    span: t.span,
                })
            }
            _ => self.match_or_set(),
        }
    }

    /// Statements that begin with a keyword, the keyword already consumed.
    fn stmt_after_kw(&mut self, w: &str, mut span: Span) -> Result<Stmt> {
        let kind = match w {
            "counter" => {
                if self.eat_word("name")? {
                    let name = self.expr(Mode::Stmt)?;
                    StmtKind::ObjRef {
                        kind: "counter".into(),
                        name,
                    }
                } else {
                    let mut packets = 0;
                    let mut bytes = 0;
                    loop {
                        if self.is_word("packets")?
                            && matches!(self.peek_n(1)?, Tok::Word(n) if parse_u64(n).is_some())
                        {
                            self.next_tok()?;
                            packets = self.number("number")?.0;
                        } else if self.is_word("bytes")?
                            && matches!(self.peek_n(1)?, Tok::Word(n) if parse_u64(n).is_some())
                        {
                            self.next_tok()?;
                            bytes = self.number("number")?.0;
                        } else {
                            break;
                        }
                    }
                    StmtKind::Counter { packets, bytes }
                }
            }
            "limit" => {
                if self.eat_word("name")? {
                    let name = self.expr(Mode::Stmt)?;
                    StmtKind::ObjRef {
                        kind: "limit".into(),
                        name,
                    }
                } else {
                    StmtKind::Limit(self.limit_body()?)
                }
            }
            "quota" => {
                if self.eat_word("name")? {
                    let name = self.expr(Mode::Stmt)?;
                    StmtKind::ObjRef {
                        kind: "quota".into(),
                        name,
                    }
                } else {
                    let over = if self.eat_word("over")? {
                        true
                    } else {
                        self.eat_word("until")?;
                        false
                    };
                    let (bytes, used) = self.quota_amounts()?;
                    StmtKind::Quota { over, bytes, used }
                }
            }
            "last" => {
                let mut used = None;
                if self.eat_word("used")? {
                    if self.eat_word("never")? {
                        used = None;
                    } else {
                        used = Some(self.time_arg()?);
                    }
                }
                StmtKind::Last { used }
            }
            "log" => StmtKind::Log(self.log_body()?),
            "reject" => self.reject_body()?,
            "snat" | "dnat" | "masquerade" | "redirect" => self.nat_body(w)?,
            "notrack" => StmtKind::Notrack,
            "flow" => {
                if !self.eat_word("add")? {
                    self.eat_word("offload")?;
                }
                let t = self.next_tok()?;
                let Tok::At(name) = t.tok else {
                    return Err(Error::new(
                        t.span,
                        "syntax error, expecting flowtable reference (@name)",
                    ));
                };
                StmtKind::FlowAdd(name)
            }
            "queue" => self.queue_body()?,
            "dup" => {
                let mut addr = None;
                let mut dev = None;
                if self.eat_word("to")? {
                    addr = Some(self.expr(Mode::Stmt)?);
                }
                if self.eat_word("device")? {
                    dev = Some(self.expr(Mode::Stmt)?);
                }
                // nft's dup errors point at the whole statement
                span = self.to_prev(span);
                StmtKind::Dup { addr, dev }
            }
            "fwd" => {
                let family = self.ip_family_word()?;
                self.expect_word("to")?;
                let first = self.expr(Mode::Stmt)?;
                let kind = if self.eat_word("device")? {
                    let dev = self.expr(Mode::Stmt)?;
                    StmtKind::Fwd {
                        family,
                        addr: Some(first),
                        dev,
                    }
                } else {
                    StmtKind::Fwd {
                        family,
                        addr: None,
                        dev: first,
                    }
                };
                // nft's fwd errors point at the whole statement
                span = self.to_prev(span);
                kind
            }
            "tproxy" => {
                let family = self.ip_family_word()?;
                self.expect_word("to")?;
                let (addr, port) = self.addr_port()?;
                StmtKind::Tproxy { family, addr, port }
            }
            "synproxy" => {
                if self.eat_word("name")? {
                    let name = self.expr(Mode::Stmt)?;
                    StmtKind::ObjRef {
                        kind: "synproxy".into(),
                        name,
                    }
                } else {
                    let (mss, wscale, flags) = self.synproxy_args()?;
                    StmtKind::Synproxy { mss, wscale, flags }
                }
            }
            _ => return Err(Error::new(span, format!("syntax error, unexpected {w}"))),
        };
        Ok(Stmt { kind, span })
    }

    /// An optional `ip`/`ip6` that names the family of what follows (`fwd ip to`, `rt ip6`).
    fn ip_family_word(&mut self) -> Result<Option<String>> {
        if self.is_word("ip")? || self.is_word("ip6")? {
            return Ok(Some(self.next_tok()?.tok.text()));
        }
        Ok(None)
    }

    fn synproxy_args(&mut self) -> Result<(Option<u32>, Option<u32>, Vec<String>)> {
        let mut mss = None;
        let mut wscale = None;
        let mut flags = vec![];
        loop {
            self.skip_seps_in_block()?;
            if self.eat_word("mss")? {
                mss = Some(self.number("number")?.0 as u32);
            } else if self.eat_word("wscale")? {
                wscale = Some(self.number("number")?.0 as u32);
            } else if self.is_word("timestamp")? || self.is_word("sack-perm")? {
                let f = self.next_tok()?.tok.text();
                if !flags.contains(&f) {
                    flags.push(f);
                }
            } else {
                break;
            }
        }
        Ok((mss, wscale, flags))
    }

    fn skip_seps_in_block(&mut self) -> Result<()> {
        // inside `synproxy foo { mss 1460; wscale 7 }` separators may appear between options
        if self.nesting > 0 {
            while matches!(self.peek()?, Tok::Semi | Tok::Newline)
                && matches!(self.peek_n(1)?, Tok::Word(_) | Tok::Semi | Tok::Newline)
            {
                let keep = matches!(self.peek_n(1)?, Tok::Word(w) if matches!(w.as_str(), "mss" | "wscale" | "timestamp" | "sack-perm"));
                if !keep {
                    break;
                }
                self.next_tok()?;
            }
        }
        Ok(())
    }

    fn limit_body(&mut self) -> Result<LimitStmt> {
        self.expect_word("rate")?;
        let over = if self.eat_word("over")? {
            true
        } else {
            self.eat_word("until")?;
            false
        };
        // The rate: `400/minute`, `1025bytes/second`, `1 kbytes / second`, `10 mbytes/second`:
        // nft's scanner sees these as a number and a unit string that may be split by blanks
        // anywhere, so gather the words and slashes that continue it.
        let t = self.next_tok()?;
        let Tok::Word(w) = &t.tok else {
            return Err(Error::new(
                t.span,
                format!(
                    "syntax error, unexpected {}, expecting number",
                    t.tok.describe()
                ),
            ));
        };
        let mut text = w.clone();
        let mut span = t.span;
        loop {
            let done = text.contains('/') && !text.ends_with('/');
            if done {
                break;
            }
            let nt = self.peek_tok()?.clone();
            match &nt.tok {
                Tok::Slash => text.push('/'),
                Tok::Word(x) if text.ends_with('/') || x.starts_with('/') => text.push_str(x),
                Tok::Word(x)
                    if !text.contains('/')
                        && is_rate_unit(x.split('/').next().unwrap_or(""))
                        && split_num_unit(&text).1.is_empty() =>
                {
                    text.push_str(x)
                }
                _ => break,
            }
            self.next_tok()?;
            span = span.to(nt.span);
        }
        let Some((num_unit, period)) = text.split_once('/') else {
            return Err(Error::new(
                span,
                format!("syntax error, unexpected {text}, expecting '/'"),
            ));
        };
        let (num, unit) = split_num_unit(num_unit);
        let rate = parse_u64(num)
            .ok_or_else(|| Error::new(span, format!("syntax error, unexpected {num_unit}")))?;
        let period = match period {
            "second" | "minute" | "hour" | "day" | "week" => period.to_string(),
            _ => {
                return Err(Error::new(
                    span,
                    format!(
                        "Wrong time format, expecting second, minute, hour, day or week ({period})"
                    ),
                ))
            }
        };
        let (rate, bytes) = if unit.is_empty() || unit == "packets" {
            (rate, false)
        } else {
            let m = byte_unit(unit).ok_or_else(|| {
                Error::new(
                    span,
                    format!("Wrong rate format, expecting bytes or packets ({unit})"),
                )
            })?;
            (
                rate.checked_mul(m)
                    .ok_or_else(|| Error::new(span, "rate out of range"))?,
                true,
            )
        };
        if rate == 0 {
            return Err(Error::new(span, "limit rate must be > 0"));
        }
        let mut burst = None;
        if self.eat_word("burst")? {
            let t2 = self.next_tok()?;
            let Tok::Word(bw) = &t2.tok else {
                return Err(Error::new(t2.span, "syntax error, expecting number"));
            };
            let (bn, bu) = split_num_unit(bw);
            let n = parse_u64(bn)
                .ok_or_else(|| Error::new(t2.span, format!("syntax error, unexpected {bw}")))?;
            let bu = if bu.is_empty() {
                match self.peek()?.clone() {
                    Tok::Word(u) if is_rate_unit(&u) => {
                        self.next_tok()?;
                        u
                    }
                    _ => String::new(),
                }
            } else {
                bu.to_string()
            };
            // a packet rate takes a packet burst and a byte rate a byte burst
            let n = if bu.is_empty() || bu == "packets" {
                if bytes {
                    return Err(Error::new(
                        t2.span,
                        "syntax error, a byte rate needs a burst in bytes, kbytes or mbytes",
                    ));
                }
                n
            } else {
                let m = byte_unit(&bu).ok_or_else(|| {
                    Error::new(
                        t2.span,
                        format!("Wrong unit format, expecting bytes, kbytes or mbytes ({bu})"),
                    )
                })?;
                if !bytes {
                    return Err(Error::new(
                        t2.span,
                        "syntax error, a packet rate needs a burst in packets",
                    ));
                }
                n.checked_mul(m)
                    .ok_or_else(|| Error::new(t2.span, "burst out of range"))?
            };
            burst = Some(n);
        }
        Ok(LimitStmt {
            over,
            rate,
            unit: period,
            bytes,
            burst,
        })
    }

    fn log_body(&mut self) -> Result<LogStmt> {
        let mut l = LogStmt::default();
        while let Some(w) = self.peek_word()? {
            match w.as_str() {
                "prefix" => {
                    self.next_tok()?;
                    let t = self.next_tok()?;
                    let e = match t.tok {
                        Tok::Str(s) => Expr::new(ExprKind::Quoted(s), t.span),
                        Tok::Word(s) => Expr::new(ExprKind::Quoted(s), t.span),
                        _ => return Err(Error::new(t.span, "syntax error, expecting string")),
                    };
                    l.prefix = Some(e);
                }
                "group" => {
                    self.next_tok()?;
                    l.group = Some(self.number("number")?.0 as u32);
                }
                "snaplen" => {
                    self.next_tok()?;
                    l.snaplen = Some(self.number("number")?.0 as u32);
                }
                "queue-threshold" => {
                    self.next_tok()?;
                    l.queue_threshold = Some(self.number("number")?.0 as u32);
                }
                "level" => {
                    self.next_tok()?;
                    let (lv, sp) = self.ident("level")?;
                    if !matches!(
                        lv.as_str(),
                        "emerg"
                            | "alert"
                            | "crit"
                            | "err"
                            | "warn"
                            | "notice"
                            | "info"
                            | "debug"
                            | "audit"
                    ) {
                        return Err(Error::new(sp, format!("invalid log level: {lv}")));
                    }
                    l.level = Some(lv);
                }
                "flags" => {
                    self.next_tok()?;
                    let (f, sp) = self.ident("log flag")?;
                    match f.as_str() {
                        "tcp" => {
                            let (x, sp2) = self.ident("sequence or options")?;
                            let mut items = vec![x];
                            while self.eat(&Tok::Comma)? {
                                items.push(self.ident("options")?.0);
                            }
                            for x in items {
                                match x.as_str() {
                                    "sequence" => push_flag(&mut l.flags, "tcp sequence"),
                                    "options" => push_flag(&mut l.flags, "tcp options"),
                                    _ => {
                                        return Err(Error::new(
                                            sp2,
                                            format!("syntax error, unexpected {x}"),
                                        ))
                                    }
                                }
                            }
                        }
                        "ip" => {
                            self.expect_word("options")?;
                            push_flag(&mut l.flags, "ip options");
                        }
                        "skuid" => push_flag(&mut l.flags, "skuid"),
                        "ether" => push_flag(&mut l.flags, "ether"),
                        "all" => push_flag(&mut l.flags, "all"),
                        _ => return Err(Error::new(sp, format!("syntax error, unexpected {f}"))),
                    }
                }
                _ => break,
            }
        }
        Ok(l)
    }

    fn reject_body(&mut self) -> Result<StmtKind> {
        if !self.eat_word("with")? {
            return Ok(StmtKind::Reject(RejectKind::Default));
        }
        let (w, sp) = self.ident("icmp, icmpv6, icmpx or tcp")?;
        match w.as_str() {
            "tcp" => {
                self.expect_word("reset")?;
                Ok(StmtKind::Reject(RejectKind::TcpReset))
            }
            "icmp" | "icmpv6" | "icmp6" | "icmpx" => {
                self.eat_word("type")?;
                let code = self.primary(Mode::Rhs)?;
                let family = if w == "icmp6" {
                    "icmpv6".to_string()
                } else {
                    w
                };
                Ok(StmtKind::Reject(RejectKind::Icmp { family, code }))
            }
            _ => Err(Error::new(sp, format!("syntax error, unexpected {w}"))),
        }
    }

    fn nat_body(&mut self, w: &str) -> Result<StmtKind> {
        let kind = match w {
            "snat" => NatKind::Snat,
            "dnat" => NatKind::Dnat,
            "masquerade" => NatKind::Masquerade,
            _ => NatKind::Redirect,
        };
        let mut family = None;
        let mut addr = None;
        let mut port = None;
        let mut prefix = false;
        match kind {
            NatKind::Snat | NatKind::Dnat => {
                // `[ip|ip6] [addr . port|interval|prefix] to ADDR[:PORT]`, `to :PORT`, or the
                // address right after the keyword
                if (self.is_word("ip")? || self.is_word("ip6")?)
                    && matches!(self.peek_n(1)?, Tok::Word(x) if matches!(x.as_str(), "to" | "prefix" | "addr" | "interval"))
                {
                    family = Some(self.next_tok()?.tok.text());
                }
                let mut need_to = family.is_some();
                if self.eat_word("addr")? {
                    self.expect(&Tok::Dot, "'.'")?;
                    self.expect_word("port")?;
                    need_to = true;
                } else if self.eat_word("interval")? {
                    need_to = true;
                } else if self.eat_word("prefix")? {
                    prefix = true;
                    need_to = true;
                }
                if need_to {
                    self.expect_word("to")?;
                } else {
                    self.eat_word("to")?;
                }
                let (a, p) = self.addr_port()?;
                addr = a;
                port = p;
            }
            NatKind::Masquerade => {
                if self.eat_word("to")? {
                    self.expect(&Tok::Colon, "':'")?;
                    port = Some(self.expr(Mode::Stmt)?);
                }
            }
            NatKind::Redirect => {
                if self.eat_word("to")? {
                    self.eat(&Tok::Colon)?;
                    port = Some(self.expr(Mode::Stmt)?);
                }
            }
        }
        let mut flags = vec![];
        while let Some(f) = self.peek_word()? {
            if matches!(f.as_str(), "random" | "fully-random" | "persistent") {
                self.next_tok()?;
                if !flags.contains(&f) {
                    flags.push(f);
                }
                if !self.eat(&Tok::Comma)? {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(StmtKind::Nat(NatStmt {
            kind,
            family,
            addr,
            port,
            prefix,
            flags,
        }))
    }

    /// `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `[::1]-[::2]:80-90`, `[::]/64`, `:80`,
    /// `ip saddr map { ... }`, `10.0.0.1-10.0.0.5:80-90`
    fn addr_port(&mut self) -> Result<(Option<Expr>, Option<Expr>)> {
        if self.eat(&Tok::Colon)? {
            let p = self.expr(Mode::Stmt)?;
            return Ok((None, Some(p)));
        }
        if matches!(self.peek()?, Tok::LBracket) {
            let a = self.bracketed_addr()?;
            let a = if self.eat(&Tok::Dash)? {
                let b = self.bracketed_addr()?;
                let sp = a.span.to(b.span);
                Expr::new(ExprKind::Range(Box::new(a), Box::new(b)), sp)
            } else if self.eat(&Tok::Slash)? {
                let (len, sp) = self.number("prefix length")?;
                let sp = a.span.to(sp);
                Expr::new(ExprKind::Prefix(Box::new(a), len as u32), sp)
            } else {
                a
            };
            let mut p = None;
            if self.eat(&Tok::Colon)? {
                p = Some(self.expr(Mode::Stmt)?);
            }
            return Ok((Some(a), p));
        }
        let a = self.expr(Mode::Stmt)?;
        let mut p = None;
        if self.eat(&Tok::Colon)? {
            p = Some(self.expr(Mode::Stmt)?);
        }
        Ok((Some(a), p))
    }

    /// `[2001:db8::1]`: an IPv6 address in brackets, so that a port can follow.
    fn bracketed_addr(&mut self) -> Result<Expr> {
        self.expect(&Tok::LBracket, "'['")?;
        let a = self.expr(Mode::Stmt)?;
        self.expect(&Tok::RBracket, "']'")?;
        Ok(a)
    }

    fn queue_body(&mut self) -> Result<StmtKind> {
        let mut num = None;
        let mut flags = vec![];
        loop {
            if self.eat_word("num")? {
                // `num` takes a number or a range only; expressions need `to`
                let e = self.expr(Mode::Stmt)?;
                if !matches!(
                    e.kind,
                    ExprKind::Symbol(_) | ExprKind::Range(..) | ExprKind::Const(_)
                ) {
                    return Err(Error::new(e.span, "syntax error, unexpected expression after queue num, expecting a number or range"));
                }
                num = Some(e);
            } else if self.eat_word("to")? {
                num = Some(self.expr(Mode::Stmt)?);
            } else if self.eat_word("flags")? {
                loop {
                    let (f, sp) = self.ident("queue flag")?;
                    if f != "bypass" && f != "fanout" {
                        return Err(Error::new(sp, format!("syntax error, unexpected {f}")));
                    }
                    if !flags.contains(&f) {
                        flags.push(f);
                    }
                    if !self.eat(&Tok::Comma)? {
                        break;
                    }
                }
            } else if self.is_word("bypass")? || self.is_word("fanout")? {
                let f = self.next_tok()?.tok.text();
                if !flags.contains(&f) {
                    flags.push(f);
                }
                self.eat(&Tok::Comma)?;
            } else {
                break;
            }
        }
        Ok(StmtKind::Queue { num, flags })
    }

    /// A statement that starts with an expression: a match (`tcp dport 22`), a mangle
    /// (`meta mark set 1`), or a verdict map (`tcp dport vmap { ... }`).
    fn match_or_set(&mut self) -> Result<Stmt> {
        let left = self.expr(Mode::Lhs)?;
        let span = left.span;
        if self.is_word("set")? {
            self.next_tok()?;
            let mut value = self.expr(Mode::Stmt)?;
            // a flag list: `ct event set new,related`
            if matches!(self.peek()?, Tok::Comma)
                && !matches!(
                    value.kind,
                    ExprKind::Set(_) | ExprKind::SetRef(_) | ExprKind::Map(..)
                )
            {
                let mut items = vec![value];
                while self.eat(&Tok::Comma)? {
                    items.push(self.expr(Mode::Stmt)?);
                }
                let sp = items[0].span.to(items[items.len() - 1].span);
                value = Expr::new(ExprKind::List(items), sp);
            }
            let sp = span.to(value.span);
            // `meta secmark set "name"` refers to a secmark object (a context string, not a
            // number)
            if matches!(&left.kind, ExprKind::Meta(k) if k == "secmark")
                && matches!(value.kind, ExprKind::Quoted(_))
            {
                return Ok(Stmt {
                    kind: StmtKind::ObjRef {
                        kind: "secmark".into(),
                        name: value,
                    },
                    span: sp,
                });
            }
            return Ok(Stmt {
                kind: StmtKind::Set { key: left, value },
                span: sp,
            });
        }
        if self.is_word("vmap")? {
            self.next_tok()?;
            let map = self.map_rhs()?;
            let sp = span.to(map.span);
            return Ok(Stmt {
                kind: StmtKind::Vmap { key: left, map },
                span: sp,
            });
        }
        // `ct mark set` style words like `ct helper "ftp"` are matches; operators:
        let op = match self.peek()?.clone() {
            Tok::EqEq => Some(RelOp::Eq),
            Tok::Ne => Some(RelOp::Ne),
            Tok::Lt => Some(RelOp::Lt),
            Tok::Gt => Some(RelOp::Gt),
            Tok::Le => Some(RelOp::Le),
            Tok::Ge => Some(RelOp::Ge),
            Tok::Bang => Some(RelOp::Neg),
            Tok::Word(w) => match w.as_str() {
                "eq" => Some(RelOp::Eq),
                "ne" => Some(RelOp::Ne),
                "lt" => Some(RelOp::Lt),
                "gt" => Some(RelOp::Gt),
                "le" => Some(RelOp::Le),
                "ge" => Some(RelOp::Ge),
                _ => None,
            },
            _ => None,
        };
        let op = match op {
            Some(o) => {
                self.next_tok()?;
                o
            }
            None => {
                if is_keyword_end(self.peek()?) {
                    return Err(Error::new(
                        span,
                        "syntax error, expression has no comparison (missing value?)",
                    ));
                }
                RelOp::Implicit
            }
        };
        let right = self.rhs_expr()?;
        let sp = span.to(right.span);
        Ok(Stmt {
            kind: StmtKind::Match { left, op, right },
            span: sp,
        })
    }

    fn map_rhs(&mut self) -> Result<Expr> {
        let t = self.peek_tok()?.clone();
        match t.tok {
            Tok::At(n) => {
                self.next_tok()?;
                Ok(Expr::new(ExprKind::SetRef(n), t.span))
            }
            Tok::LBrace => self.set_expr(),
            _ => self.unexpected("'{' or '@'"),
        }
    }

    /// Right-hand side of a relational: a value, list, range, prefix, set, or set reference.
    fn rhs_expr(&mut self) -> Result<Expr> {
        let first = self.expr(Mode::Rhs)?;
        // `ct state established,related`, `tcp flags syn,ack`
        if matches!(self.peek()?, Tok::Comma)
            && !matches!(first.kind, ExprKind::Set(_) | ExprKind::SetRef(_))
        {
            let mut items = vec![first];
            while self.eat(&Tok::Comma)? {
                items.push(self.expr(Mode::Rhs)?);
            }
            let sp = items[0].span.to(items[items.len() - 1].span);
            // `fin,syn / fin,syn`: the mask applies to the whole list
            if matches!(items.last().map(|e| &e.kind), Some(ExprKind::Masked(..))) {
                let Some(Expr {
                    kind: ExprKind::Masked(v, m),
                    ..
                }) = items.pop()
                else {
                    return self.unexpected("flag list");
                };
                items.push(*v);
                let lsp = items[0].span.to(items[items.len() - 1].span);
                let list = Expr::new(ExprKind::List(items), lsp);
                return Ok(Expr::new(ExprKind::Masked(Box::new(list), m), sp));
            }
            return Ok(Expr::new(ExprKind::List(items), sp));
        }
        Ok(first)
    }

    // ---- expressions ---------------------------------------------------------------------

    /// A full expression: concatenations of binary-op chains of primaries, with an optional
    /// `map`.
    pub fn expr(&mut self, mode: Mode) -> Result<Expr> {
        self.enter()?;
        let r = self.expr_inner(mode);
        self.leave();
        r
    }

    fn expr_inner(&mut self, mode: Mode) -> Result<Expr> {
        let first = self.rhs_range(mode)?;
        let mut e = if matches!(self.peek()?, Tok::Dot) {
            let mut items = vec![first];
            while self.eat(&Tok::Dot)? {
                self.no_set_in_concat(mode)?;
                items.push(self.rhs_range(mode)?);
            }
            let sp = items[0].span.to(items[items.len() - 1].span);
            Expr::new(ExprKind::Concat(items), sp)
        } else {
            first
        };
        if mode != Mode::Rhs && self.is_word("map")? {
            self.next_tok()?;
            let m = self.map_rhs()?;
            let sp = e.span.to(m.span);
            e = Expr::new(ExprKind::Map(Box::new(e), Box::new(m)), sp);
        }
        Ok(e)
    }

    /// nft's grammar has no set, nor set reference, among a concatenation's values:
    /// `{ 198.18.0.1 . { 22 } }` is a syntax error at the inner `{`.
    fn no_set_in_concat(&mut self, mode: Mode) -> Result<()> {
        let raw_payload = self.peek_n(1)? == &Tok::Comma;
        match self.peek()? {
            Tok::LBrace => self.unexpected(""),
            // `@nh,0,8` is a raw payload expression, not a set
            Tok::At(_) if mode == Mode::Rhs && !raw_payload => {
                let sp = self.span()?;
                let at = Span {
                    hi: (sp.lo + 1).min(sp.hi),
                    ..sp
                };
                Err(Error::new(at, "syntax error, unexpected @"))
            }
            _ => Ok(()),
        }
    }

    /// A value's range: nft's `basic_rhs_expr - basic_rhs_expr`, whose ends are whole `|`, `^`,
    /// `&` and shift expressions (`0x2-0x2 | 0x10` is `0x2-0x12`).
    fn rhs_range(&mut self, mode: Mode) -> Result<Expr> {
        let l = self.or_expr(mode)?;
        if mode != Mode::Rhs || !self.eat(&Tok::Dash)? {
            return Ok(l);
        }
        let r = self.or_expr(mode)?;
        let sp = l.span.to(r.span);
        Ok(Expr::new(ExprKind::Range(Box::new(l), Box::new(r)), sp))
    }

    /// nft's scanner ends a number at a `-`: where a word `N-rest` (`N` a decimal or hex number)
    /// is an operand of `|`, `^`, `&` or a shift, it is read as `N`, `-`, `rest`.
    fn split_number_range(&mut self) -> Result<()> {
        self.fill(1)?;
        let Tok::Word(w) = &self.la[0].tok else {
            return Ok(());
        };
        let w = w.clone();
        let n = match w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
            Some(h) => match h.bytes().take_while(u8::is_ascii_hexdigit).count() {
                0 => return Ok(()),
                k => 2 + k,
            },
            None => w.bytes().take_while(u8::is_ascii_digit).count(),
        };
        if n == 0 || w.as_bytes().get(n) != Some(&b'-') || n + 1 >= w.len() {
            return Ok(());
        }
        let in_chain = self.after_op
            || is_binop_tok(&self.la[1].tok)
            || matches!(&self.la[1].tok, Tok::Word(x) if is_binop_word(x));
        if !in_chain {
            return Ok(());
        }
        let t = self.la.pop_front().expect("filled");
        let (a, b) = (w[..n].to_string(), w[n + 1..].to_string());
        let sp = t.span;
        // spans of the parts, where the token's span is the word itself (not a variable's use)
        let exact = sp.hi.saturating_sub(sp.lo) as usize == w.len();
        let part = |lo: usize, hi: usize| {
            if exact {
                Span {
                    file: sp.file,
                    lo: sp.lo + lo as u32,
                    hi: sp.lo + hi as u32,
                }
            } else {
                sp
            }
        };
        let len = w.len();
        for (tok, s, space) in [
            (Tok::Word(b), part(n + 1, len), false),
            (Tok::Dash, part(n, n + 1), false),
            (Tok::Word(a), part(0, n), t.space_before),
        ] {
            self.la.push_front(Token {
                tok,
                span: s,
                space_before: space,
            });
        }
        Ok(())
    }

    fn or_expr(&mut self, mode: Mode) -> Result<Expr> {
        self.binop_level(mode, (&Tok::Pipe, "or", BinOp::Or), Self::xor_expr)
    }

    fn xor_expr(&mut self, mode: Mode) -> Result<Expr> {
        self.binop_level(mode, (&Tok::Caret, "xor", BinOp::Xor), Self::and_expr)
    }

    fn and_expr(&mut self, mode: Mode) -> Result<Expr> {
        self.binop_level(mode, (&Tok::Amp, "and", BinOp::And), Self::shift_expr)
    }

    /// One level of a left-associative operator, written as a token or as a word (`|` or `or`),
    /// over operands of the next level.
    fn binop_level(
        &mut self,
        mode: Mode,
        (tok, word, op): (&Tok, &str, BinOp),
        operand: fn(&mut Self, Mode) -> Result<Expr>,
    ) -> Result<Expr> {
        let mut l = operand(self, mode)?;
        while self.peek()? == tok || self.is_word(word)? {
            self.next_tok()?;
            let r = operand(self, mode)?;
            let sp = l.span.to(r.span);
            l = Expr::new(ExprKind::Binop(op, Box::new(l), Box::new(r)), sp);
        }
        Ok(l)
    }

    fn shift_expr(&mut self, mode: Mode) -> Result<Expr> {
        let mut l = self.range_expr(mode)?;
        loop {
            let op = if matches!(self.peek()?, Tok::Shl) || self.is_word("lshift")? {
                BinOp::Shl
            } else if matches!(self.peek()?, Tok::Shr) || self.is_word("rshift")? {
                BinOp::Shr
            } else {
                return Ok(l);
            };
            self.next_tok()?;
            let r = self.range_expr(mode)?;
            let sp = l.span.to(r.span);
            l = Expr::new(ExprKind::Binop(op, Box::new(l), Box::new(r)), sp);
        }
    }

    /// Values may be followed by `-` (range) or `/` (prefix or mask) with spaces around.
    fn range_expr(&mut self, mode: Mode) -> Result<Expr> {
        if mode == Mode::Rhs {
            self.split_number_range()?;
        }
        let l = self.primary(mode)?;
        if mode == Mode::Lhs {
            return Ok(l);
        }
        match self.peek()? {
            // a value's range is read above its `|` and `&` (`rhs_range`)
            Tok::Dash if mode == Mode::Stmt => {
                self.next_tok()?;
                let r = self.primary(Mode::Rhs)?;
                let sp = l.span.to(r.span);
                Ok(Expr::new(ExprKind::Range(Box::new(l), Box::new(r)), sp))
            }
            Tok::Slash => {
                self.next_tok()?;
                let r = self.primary(Mode::Rhs)?;
                let sp = l.span.to(r.span);
                match &r.kind {
                    ExprKind::Symbol(n)
                        if n.bytes().all(|b| b.is_ascii_digit())
                            && !n.is_empty()
                            && !matches!(l.kind, ExprKind::Symbol(ref s) if !s.contains(['.', ':'])) =>
                    {
                        let len = n
                            .parse::<u32>()
                            .map_err(|_| Error::new(r.span, "prefix length out of range"))?;
                        Ok(Expr::new(ExprKind::Prefix(Box::new(l), len), sp))
                    }
                    _ => {
                        // `syn / syn,fin,rst`: a value under a mask
                        let mut rr = r;
                        if matches!(self.peek()?, Tok::Comma) {
                            let mut items = vec![rr];
                            while self.eat(&Tok::Comma)? {
                                items.push(self.primary(Mode::Rhs)?);
                            }
                            let sp2 = items[0].span.to(items[items.len() - 1].span);
                            rr = Expr::new(ExprKind::List(items), sp2);
                        }
                        let sp = l.span.to(rr.span);
                        Ok(Expr::new(ExprKind::Masked(Box::new(l), Box::new(rr)), sp))
                    }
                }
            }
            _ => Ok(l),
        }
    }

    /// `{ elem, elem : value, ... }`
    pub fn set_expr(&mut self) -> Result<Expr> {
        let open = self.expect(&Tok::LBrace, "'{'")?;
        self.enter()?;
        let mut elems = Vec::new();
        loop {
            self.skip_newlines()?;
            if matches!(self.peek()?, Tok::RBrace) {
                break;
            }
            // A set inside a set is a member by itself (nft merges its elements into the
            // outer set): nothing joins it, maps it or follows it but ',' or '}'.
            if matches!(self.peek()?, Tok::LBrace) {
                elems.push(self.set_expr()?);
                self.skip_newlines()?;
                if self.eat(&Tok::Comma)? {
                    continue;
                }
                break;
            }
            let key = self.set_elem_key()?;
            let key = self.elem_opts(key)?;
            let e = if matches!(self.peek()?, Tok::Colon) {
                self.next_tok()?;
                let v = self.map_value()?;
                let v = self.elem_opts(v)?;
                let sp = key.span.to(v.span);
                Expr::new(ExprKind::Mapping(Box::new(key), Box::new(v)), sp)
            } else {
                key
            };
            elems.push(e);
            self.skip_newlines()?;
            if !self.eat(&Tok::Comma)? {
                self.skip_newlines()?;
                break;
            }
        }
        let close = self.expect(&Tok::RBrace, "comma or '}'")?;
        self.leave();
        Ok(Expr::new(ExprKind::Set(elems), open.span.to(close.span)))
    }

    fn set_elem_key(&mut self) -> Result<Expr> {
        if matches!(self.peek()?, Tok::Star) {
            let t = self.next_tok()?;
            return Ok(Expr::new(ExprKind::Wildcard, t.span));
        }
        self.expr(Mode::Rhs)
    }

    fn map_value(&mut self) -> Result<Expr> {
        let t = self.peek_tok()?.clone();
        if let Tok::Word(w) = &t.tok {
            match w.as_str() {
                "accept" | "drop" | "continue" | "return" => {
                    self.next_tok()?;
                    let v = match w.as_str() {
                        "accept" => Verdict::Accept,
                        "drop" => Verdict::Drop,
                        "continue" => Verdict::Continue,
                        _ => Verdict::Return,
                    };
                    return Ok(Expr::new(ExprKind::Verdict(v), t.span));
                }
                "jump" | "goto" => {
                    self.next_tok()?;
                    let (c, sp) = self.chain_ident_expecting("string or '$'")?;
                    let v = if w == "jump" {
                        Verdict::Jump(c)
                    } else {
                        Verdict::Goto(c)
                    };
                    return Ok(Expr::new(ExprKind::Verdict(v), t.span.to(sp)));
                }
                _ => {}
            }
        }
        self.expr(Mode::Rhs)
    }

    /// A statement a set element may carry (`counter`, `limit ...`, `ct count over 2`), its
    /// keyword already consumed.
    fn elem_stmt_after_kw(&mut self, kw: &str, span: Span) -> Result<Stmt> {
        if kw == "ct" {
            self.expect_word("count")?;
            let over = self.eat_word("over")?;
            let (n, sp) = self.number("number")?;
            return Ok(Stmt {
                kind: StmtKind::Connlimit {
                    over,
                    count: n as u32,
                },
                span: span.to(sp),
            });
        }
        self.stmt_after_kw(kw, span)
    }

    /// `timeout`, `expires` and `comment` after the key of a dynamic set update; statements
    /// that follow belong to the update itself.
    fn dynset_elem_opts(&mut self, e: Expr) -> Result<Expr> {
        self.elem_opts_with(e, false)
    }

    /// The options of a set element: `timeout`, `expires`, `comment` and the statements it
    /// carries (`counter`, `limit ...`, `ct count ...`).
    fn elem_opts(&mut self, e: Expr) -> Result<Expr> {
        self.elem_opts_with(e, true)
    }

    /// Element options, with the element's statements when `stmts` (else they are left for
    /// whatever follows).
    fn elem_opts_with(&mut self, e: Expr, stmts: bool) -> Result<Expr> {
        let mut opts = ElemOpts::default();
        let mut any = false;
        while let Some(w) = self.peek_word()? {
            match w.as_str() {
                "timeout" => {
                    self.next_tok()?;
                    opts.timeout = Some(self.time_arg()?);
                }
                "expires" => {
                    self.next_tok()?;
                    opts.expires = Some(self.time_arg()?);
                }
                "comment" => {
                    self.next_tok()?;
                    opts.comment = Some(self.comment_str()?);
                }
                "counter" | "limit" | "quota" | "last" if stmts => {
                    let t = self.next_tok()?;
                    opts.stmts.push(self.stmt_after_kw(&w, t.span)?);
                }
                "ct" if stmts && self.is_word_n(1, "count")? => {
                    let t = self.next_tok()?;
                    opts.stmts.push(self.elem_stmt_after_kw("ct", t.span)?);
                }
                _ => break,
            }
            any = true;
        }
        if !any {
            return Ok(e);
        }
        let sp = e.span;
        Ok(Expr::new(ExprKind::Elem(Box::new(e), Box::new(opts)), sp))
    }

    /// One primary expression. In `Rhs` mode words are values; in `Lhs`/`Stmt` mode a word
    /// that names a selector starts one.
    pub fn primary(&mut self, mode: Mode) -> Result<Expr> {
        let t = self.peek_tok()?.clone();
        match &t.tok {
            Tok::LParen => {
                self.next_tok()?;
                let e = self.expr(mode)?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::LBrace => self.set_expr(),
            Tok::Str(s) => {
                self.next_tok()?;
                Ok(Expr::new(ExprKind::Quoted(s.clone()), t.span))
            }
            Tok::At(n) => {
                self.next_tok()?;
                if matches!(n.as_str(), "ll" | "nh" | "th" | "ih")
                    && matches!(self.peek()?, Tok::Comma)
                {
                    self.next_tok()?;
                    let (off, _) = self.number("offset")?;
                    self.expect(&Tok::Comma, "','")?;
                    let (len, sp) = self.number("length")?;
                    // the port fields of any transport header are `th sport`/`th dport`
                    if n == "th" && len == 16 && (off == 0 || off == 16) {
                        let field = if off == 0 { "sport" } else { "dport" };
                        return Ok(Expr::new(
                            ExprKind::Payload {
                                proto: "th".into(),
                                field: field.into(),
                            },
                            t.span.to(sp),
                        ));
                    }
                    return Ok(Expr::new(
                        ExprKind::RawPayload {
                            base: n.clone(),
                            offset: off as u32,
                            len: len as u32,
                        },
                        t.span.to(sp),
                    ));
                }
                Ok(Expr::new(ExprKind::SetRef(n.clone()), t.span))
            }
            Tok::Star => {
                self.next_tok()?;
                Ok(Expr::new(ExprKind::Wildcard, t.span))
            }
            Tok::Word(w) => {
                let w = w.clone();
                if mode != Mode::Rhs {
                    if let Some(e) = self.selector(&w, t.span)? {
                        return Ok(e);
                    }
                }
                self.next_tok()?;
                Ok(Expr::new(ExprKind::Symbol(w), t.span))
            }
            _ => self.unexpected("expression"),
        }
    }

    /// Parses a selector starting at word `w` if it is one, else returns None (nothing consumed).
    fn selector(&mut self, w: &str, span: Span) -> Result<Option<Expr>> {
        let next_word = self.peek_n(1)?.clone();
        let nw = match &next_word {
            Tok::Word(x) => Some(x.clone()),
            _ => None,
        };
        let mk = |k: ExprKind, sp: Span| Ok(Some(Expr::new(k, sp)));
        // payload protocols
        if is_payload_proto(w) {
            let Some(f) = nw else { return Ok(None) };
            if crate::proto::is_tunnel(w) && is_payload_proto(&f) && !is_payload_field(w, &f) {
                return self.inner_selector(w, &f, span);
            }
            if w == "tcp" && f == "option" {
                self.next_tok()?;
                self.next_tok()?;
                if let Tok::At(k) = self.peek()?.clone() {
                    // `tcp option @kind,offset,length`: raw bytes of an option
                    let at = self.next_tok()?.span;
                    let Some(kind) = tcpopt_number(&k, at)? else {
                        return Err(Error::new(at, "syntax error, expecting tcp option kind"));
                    };
                    self.expect(&Tok::Comma, "','")?;
                    let (off, _) = self.number("offset")?;
                    self.expect(&Tok::Comma, "','")?;
                    let (len, sp) = self.number("length")?;
                    return mk(
                        ExprKind::TcpOpt {
                            opt: kind.to_string(),
                            field: Some(format!("@{off},{len}")),
                        },
                        span.to(sp),
                    );
                }
                let (opt, sp) = self.ident("tcp option")?;
                // an option by number is the one nft knows by that kind, if any
                let opt = match tcpopt_number(&opt, sp)? {
                    Some(n) => crate::proto::tcpopt_name(n).map_or(n.to_string(), str::to_string),
                    None => opt,
                };
                // the first SACK block is listed as plain `sack`
                let opt = if opt == "sack0" {
                    "sack".to_string()
                } else {
                    opt
                };
                let field = self.word_if(is_tcpopt_field)?;
                return mk(ExprKind::TcpOpt { opt, field }, span.to(sp));
            }
            if w == "ip" && f == "option" {
                self.next_tok()?;
                self.next_tok()?;
                let (opt, sp) = self.ident("ip option")?;
                let field =
                    self.word_if(|x| matches!(x, "type" | "length" | "value" | "ptr" | "addr"))?;
                return mk(ExprKind::IpOpt { opt, field }, span.to(sp));
            }
            if w == "sctp" && f == "chunk" {
                self.next_tok()?;
                self.next_tok()?;
                let (chunk, sp) = self.ident("sctp chunk")?;
                let field = self.word_if(is_sctp_chunk_field)?;
                return mk(ExprKind::SctpChunk { chunk, field }, span.to(sp));
            }
            if w == "dccp" && f == "option" {
                self.next_tok()?;
                self.next_tok()?;
                let (n, sp) = self.number("option number")?;
                return mk(ExprKind::DccpOpt(n as u32), span.to(sp));
            }
            if w == "arp" && matches!(f.as_str(), "saddr" | "daddr") {
                // `arp saddr ip`, `arp daddr ether`: the address kind is part of the field
                if let Tok::Word(kind) = self.peek_n(2)?.clone() {
                    if kind == "ip" || kind == "ether" {
                        self.next_tok()?;
                        self.next_tok()?;
                        let kt = self.next_tok()?;
                        return mk(
                            ExprKind::Payload {
                                proto: w.to_string(),
                                field: format!("{f} {kind}"),
                            },
                            span.to(kt.span),
                        );
                    }
                }
            }
            if is_payload_field(w, &f) {
                self.next_tok()?;
                let ft = self.next_tok()?;
                // `vlan cfi` is the old name of the drop eligible indicator
                let f = if w == "vlan" && f == "cfi" {
                    "dei".to_string()
                } else {
                    f
                };
                return mk(
                    ExprKind::Payload {
                        proto: w.to_string(),
                        field: f,
                    },
                    span.to(ft.span),
                );
            }
            return Ok(None);
        }
        if is_exthdr(w) {
            if let Some(f) = &nw {
                if is_exthdr_field(w, f) {
                    self.next_tok()?;
                    let mut end = self.next_tok()?.span;
                    let mut field = f.clone();
                    // an address of a list: `srh sid[1]`, `rt0 addr[2]`
                    if matches!(f.as_str(), "sid" | "addr") && matches!(self.peek()?, Tok::LBracket)
                    {
                        self.next_tok()?;
                        let (n, _) = self.number("list index")?;
                        if !matches!(self.peek()?, Tok::RBracket) {
                            return self.unexpected("']'");
                        }
                        end = self.next_tok()?.span;
                        field = format!("{f}[{n}]");
                    }
                    return mk(
                        ExprKind::Exthdr {
                            hdr: w.to_string(),
                            field,
                        },
                        span.to(end),
                    );
                }
            }
            if w != "rt" {
                return Ok(None);
            }
        }
        match w {
            "exthdr" => {
                self.next_tok()?;
                let (hdr, hsp) = self.ident("extension header")?;
                // `exthdr hbh exists`, `exthdr hbh != missing`, `exthdr hbh 1`: a presence
                // check, written with no field; the value is the right-hand side
                let presence = match self.peek()? {
                    Tok::Word(x) => {
                        x == "exists" || x == "missing" || x.bytes().all(|b| b.is_ascii_digit())
                    }
                    _ => true,
                };
                if presence {
                    return mk(
                        ExprKind::Exthdr {
                            hdr,
                            field: String::new(),
                        },
                        span.to(hsp),
                    );
                }
                let (f, sp) = self.ident("field")?;
                mk(ExprKind::Exthdr { hdr, field: f }, span.to(sp))
            }
            "meta" => {
                let Some(k) = nw else { return Ok(None) };
                if !is_meta_key(&k) {
                    self.next_tok()?;
                    let t = self.next_tok()?;
                    return Err(Error::new(
                        t.span,
                        format!("syntax error, unexpected {}", k),
                    ));
                }
                self.next_tok()?;
                let t = self.next_tok()?;
                mk(ExprKind::Meta(k), span.to(t.span))
            }
            // `ipsec in reqid 1` is the ipsec expression, a bare `ipsec` the meta key
            _ if is_unqualified_meta(w)
                && !(w == "ipsec" && matches!(nw.as_deref(), Some("in" | "out"))) =>
            {
                self.next_tok()?;
                mk(ExprKind::Meta(w.to_string()), span)
            }
            "ct" => {
                let Some(mut k) = nw else { return Ok(None) };
                self.next_tok()?;
                let mut dir = None;
                let mut family = None;
                let mut sp = self.next_tok()?.span;
                if k == "original" || k == "reply" {
                    dir = Some(k.clone());
                    let (k2, sp2) = self.ident("ct key")?;
                    k = k2;
                    sp = sp2;
                }
                if k == "ip" || k == "ip6" {
                    family = Some(k.clone());
                    let (k2, sp2) = self.ident("ct key")?;
                    k = k2;
                    sp = sp2;
                }
                if !is_ct_key(&k) {
                    return Err(Error::new(sp, format!("syntax error, unexpected {k}")));
                }
                mk(
                    ExprKind::Ct {
                        key: k,
                        dir,
                        family,
                    },
                    span.to(sp),
                )
            }
            "fib" => {
                self.next_tok()?;
                let mut flags = vec![self.ident("fib flag")?.0];
                while matches!(self.peek()?, Tok::Dot) {
                    self.next_tok()?;
                    flags.push(self.ident("fib flag")?.0);
                }
                let (result, sp) = self.ident("fib result")?;
                mk(ExprKind::Fib { flags, result }, span.to(sp))
            }
            "rt" => {
                self.next_tok()?;
                let family = self.ip_family_word()?;
                let (key, sp) = self.ident("rt key")?;
                mk(ExprKind::Rt { key, family }, span.to(sp))
            }
            "numgen" => {
                self.next_tok()?;
                let (m, _) = self.ident("inc or random")?;
                let random = m == "random";
                self.expect_word("mod")?;
                let (modulus, mut sp) = self.number("modulus")?;
                let mut offset = 0;
                if self.eat_word("offset")? {
                    let (o, s) = self.number("offset")?;
                    offset = o;
                    sp = s;
                }
                mk(
                    ExprKind::Numgen {
                        random,
                        modulus: modulus as u32,
                        offset: offset as u32,
                    },
                    span.to(sp),
                )
            }
            "jhash" | "symhash" => {
                self.next_tok()?;
                let sym = w == "symhash";
                let inner = if sym {
                    None
                } else {
                    Some(Box::new(self.hash_key()?))
                };
                self.expect_word("mod")?;
                let (modulus, mut sp) = self.number("modulus")?;
                let mut seed = None;
                let mut offset = 0;
                loop {
                    if self.eat_word("seed")? {
                        let (s, s2) = self.number("seed")?;
                        seed = Some(s as u32);
                        sp = s2;
                    } else if self.eat_word("offset")? {
                        let (o, s2) = self.number("offset")?;
                        offset = o as u32;
                        sp = s2;
                    } else {
                        break;
                    }
                }
                mk(
                    ExprKind::Hash {
                        expr: inner,
                        modulus: modulus as u32,
                        seed,
                        offset,
                        sym,
                    },
                    span.to(sp),
                )
            }
            "socket" => {
                self.next_tok()?;
                let (key, mut sp) = self.ident("socket key")?;
                let mut level = None;
                if key == "cgroupv2" {
                    self.expect_word("level")?;
                    let (l, s) = self.number("level")?;
                    level = Some(l as u32);
                    sp = s;
                }
                mk(ExprKind::Socket { key, level }, span.to(sp))
            }
            "osf" => {
                self.next_tok()?;
                let mut ttl = None;
                if self.eat_word("ttl")? {
                    ttl = Some(self.ident("ttl mode")?.0);
                }
                let (key, sp) = self.ident("name or version")?;
                mk(ExprKind::Osf { ttl, key }, span.to(sp))
            }
            "ipsec" => {
                self.next_tok()?;
                let (dir, _) = self.ident("in or out")?;
                let mut spnum = 0;
                if self.eat_word("spnum")? {
                    spnum = self.number("number")?.0 as u32;
                }
                let family = self.ip_family_word()?;
                let (key, sp) = self.ident("ipsec key")?;
                mk(
                    ExprKind::Ipsec {
                        dir,
                        spnum,
                        key,
                        family,
                    },
                    span.to(sp),
                )
            }
            "tunnel" => {
                self.next_tok()?;
                let (key, sp) = self.ident("tunnel key")?;
                mk(ExprKind::Tunnel(key), span.to(sp))
            }
            _ => Ok(None),
        }
    }

    /// `vxlan ip saddr`, `gretap ether saddr`: a header inside a tunnel. The payload keeps the
    /// tunnel as a prefix of its protocol (`vxlan ip`), which is how it prints.
    fn inner_selector(&mut self, tunnel: &str, inner: &str, span: Span) -> Result<Option<Expr>> {
        self.next_tok()?;
        let t = self.peek_tok()?.clone();
        match self.selector(inner, t.span)? {
            Some(Expr {
                kind: ExprKind::Payload { proto, field },
                span: sp,
                ..
            }) => Ok(Some(Expr::new(
                ExprKind::Payload {
                    proto: format!("{tunnel} {proto}"),
                    field,
                },
                span.to(sp),
            ))),
            Some(e) => Err(Error::new(
                e.span,
                format!("syntax error, {inner} header field expected after {tunnel}"),
            )),
            None => self.unexpected(&format!("{inner} header field")),
        }
    }

    fn hash_key(&mut self) -> Result<Expr> {
        let first = self.primary(Mode::Lhs)?;
        let mut items = vec![first];
        while matches!(self.peek()?, Tok::Dot) {
            self.next_tok()?;
            items.push(self.primary(Mode::Lhs)?);
        }
        if items.len() == 1 {
            return Ok(items.pop().expect("one"));
        }
        let sp = items[0].span.to(items[items.len() - 1].span);
        Ok(Expr::new(ExprKind::Concat(items), sp))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Left of a relational: selectors.
    Lhs,
    /// Right of a relational or a set element: values.
    Rhs,
    /// Statement arguments (`set` values, NAT addresses): both.
    Stmt,
}

fn is_nft_keyword(w: &str) -> bool {
    NFT_KEYWORDS.split_ascii_whitespace().any(|k| k == w)
}

/// How nft's errors name a token: one of its keywords by itself, anything else as
/// [`Tok::describe`] says.
fn nft_token_name(t: &Tok) -> String {
    match t {
        Tok::Word(k) if is_nft_keyword(k) => k.clone(),
        t => t.describe(),
    }
}

fn is_binop_tok(t: &Tok) -> bool {
    matches!(t, Tok::Pipe | Tok::Caret | Tok::Amp | Tok::Shl | Tok::Shr)
}

fn is_binop_word(w: &str) -> bool {
    matches!(w, "or" | "xor" | "and" | "lshift" | "rshift")
}

fn is_elem_stmt_kw(w: &str) -> bool {
    matches!(w, "counter" | "quota" | "limit" | "last" | "ct")
}

fn push_flag(v: &mut Vec<String>, f: &str) {
    if !v.iter().any(|x| x == f) {
        v.push(f.to_string());
    }
}

// ---- vocabulary ---------------------------------------------------------------------------

pub fn is_payload_proto(w: &str) -> bool {
    matches!(
        w,
        "ether"
            | "vlan"
            | "arp"
            | "ip"
            | "icmp"
            | "igmp"
            | "ip6"
            | "icmpv6"
            | "tcp"
            | "udp"
            | "udplite"
            | "sctp"
            | "dccp"
            | "ah"
            | "esp"
            | "comp"
            | "th"
            | "gre"
            | "gretap"
            | "vxlan"
            | "geneve"
    )
}

pub fn is_payload_field(proto: &str, f: &str) -> bool {
    if crate::proto::payload_field(proto, f).is_some() {
        return true;
    }
    // fallback vocabulary until the protocol tables cover everything
    let fields: &[&str] = match proto {
        "ether" => &["saddr", "daddr", "type"],
        "vlan" => &["id", "pcp", "dei", "cfi", "type"],
        "arp" => &[
            "htype",
            "ptype",
            "hlen",
            "plen",
            "operation",
            "saddr",
            "daddr",
        ],
        "ip" => &[
            "version",
            "hdrlength",
            "dscp",
            "ecn",
            "length",
            "id",
            "frag-off",
            "ttl",
            "protocol",
            "checksum",
            "saddr",
            "daddr",
        ],
        "icmp" => &[
            "type", "code", "checksum", "id", "sequence", "gateway", "mtu",
        ],
        "igmp" => &["type", "mrt", "checksum", "group"],
        "ip6" => &[
            "version",
            "dscp",
            "ecn",
            "flowlabel",
            "length",
            "nexthdr",
            "hoplimit",
            "saddr",
            "daddr",
        ],
        "icmpv6" => &[
            "type",
            "code",
            "checksum",
            "parameter-problem",
            "mtu",
            "id",
            "sequence",
            "max-delay",
            "taddr",
            "daddr",
        ],
        "tcp" => &[
            "sport", "dport", "sequence", "ackseq", "doff", "reserved", "flags", "window",
            "checksum", "urgptr",
        ],
        "udp" | "udplite" => &["sport", "dport", "length", "csumcov", "checksum"],
        "sctp" => &["sport", "dport", "vtag", "checksum"],
        "dccp" => &["sport", "dport", "type"],
        "ah" => &["nexthdr", "hdrlength", "reserved", "spi", "sequence"],
        "esp" => &["spi", "sequence"],
        "comp" => &["nexthdr", "flags", "cpi"],
        "th" => &["sport", "dport"],
        "gre" => &["flags", "version", "protocol"],
        "vxlan" => &["flags", "vni"],
        "geneve" => &["vni", "protocol", "flags"],
        _ => &[],
    };
    fields.contains(&f)
}

fn is_exthdr(w: &str) -> bool {
    matches!(
        w,
        "hbh" | "rt" | "rt0" | "rt2" | "srh" | "frag" | "dst" | "mh"
    )
}

fn is_exthdr_field(hdr: &str, f: &str) -> bool {
    let fields: &[&str] = match hdr {
        "hbh" | "dst" => &["nexthdr", "hdrlength"],
        "rt" => &["nexthdr", "hdrlength", "type", "seg-left"],
        "rt0" => &["addr", "reserved"],
        "rt2" => &["addr"],
        "srh" => &["last-entry", "flags", "tag", "sid"],
        "frag" => &[
            "nexthdr",
            "reserved",
            "frag-off",
            "reserved2",
            "more-fragments",
            "id",
        ],
        "mh" => &["nexthdr", "hdrlength", "type", "reserved", "checksum"],
        _ => &[],
    };
    fields.contains(&f)
        || (hdr == "rt0" && f.starts_with("addr"))
        || (hdr == "srh" && f.starts_with("sid"))
}

/// A TCP option kind written as a number (`tcp option 254`), which must fit in a byte.
fn tcpopt_number(w: &str, sp: Span) -> Result<Option<u8>> {
    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match w.parse::<u8>() {
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(Error::new(sp, "value too large")),
    }
}

fn is_tcpopt_field(f: &str) -> bool {
    matches!(
        f,
        "kind"
            | "length"
            | "size"
            | "count"
            | "left"
            | "right"
            | "tsval"
            | "tsecr"
            | "subtype"
            | "value"
    )
}

fn is_sctp_chunk_field(f: &str) -> bool {
    matches!(
        f,
        "type"
            | "flags"
            | "length"
            | "tsn"
            | "stream"
            | "ssn"
            | "ppid"
            | "init-tag"
            | "a-rwnd"
            | "num-outbound-streams"
            | "num-inbound-streams"
            | "initial-tsn"
            | "cum-tsn-ack"
            | "num-gap-ack-blocks"
            | "num-dup-tsns"
            | "lowest-tsn"
            | "seqno"
            | "new-cum-tsn"
    )
}

pub fn is_meta_key(k: &str) -> bool {
    crate::proto::meta_key(k).is_some()
        || is_unqualified_meta(k)
        || matches!(
            k,
            "length"
                | "nfproto"
                | "l4proto"
                | "protocol"
                | "priority"
                | "random"
                | "secpath"
                | "iifkind"
                | "oifkind"
                | "ibrpvid"
                | "ibrvproto"
                | "secmark"
                | "sdif"
                | "sdifname"
                | "broute"
        )
}

/// The meta keys that may stand without `meta` before them (`mark`, `iifname`, ...).
fn is_unqualified_meta(w: &str) -> bool {
    matches!(
        w,
        "mark"
            | "iif"
            | "iifname"
            | "iiftype"
            | "oif"
            | "oifname"
            | "oiftype"
            | "skuid"
            | "skgid"
            | "nftrace"
            | "rtclassid"
            | "ibriport"
            | "obriport"
            | "ibrname"
            | "obrname"
            | "pkttype"
            | "cpu"
            | "iifgroup"
            | "oifgroup"
            | "cgroup"
            | "ipsec"
            | "time"
            | "day"
            | "hour"
    )
}

fn is_ct_key(k: &str) -> bool {
    crate::proto::ct_key(k).is_some()
        || matches!(
            k,
            "state"
                | "direction"
                | "status"
                | "mark"
                | "expiration"
                | "helper"
                | "l3proto"
                | "protocol"
                | "saddr"
                | "daddr"
                | "proto-src"
                | "proto-dst"
                | "bytes"
                | "packets"
                | "avgpkt"
                | "zone"
                | "label"
                | "event"
                | "secmark"
                | "id"
                | "timeout"
                | "expectation"
        )
}

// ---- small parsers shared with the evaluator ------------------------------------------------

pub fn parse_u64(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn parse_i64(s: &str) -> Option<i64> {
    parse_u64(s).and_then(|v| i64::try_from(v).ok())
}

/// `1025bytes` → ("1025", "bytes")
pub fn split_num_unit(w: &str) -> (&str, &str) {
    let p = w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len());
    if w.starts_with("0x") {
        return (w, "");
    }
    (&w[..p], &w[p..])
}

/// A unit that may follow the number of a limit rate or burst.
fn is_rate_unit(u: &str) -> bool {
    u == "packets" || byte_unit(u).is_some()
}

pub fn byte_unit(u: &str) -> Option<u64> {
    Some(match u {
        "bytes" => 1,
        "kbytes" => 1024,
        "mbytes" => 1024 * 1024,
        _ => return None,
    })
}

/// nft time strings: `1d2h3m4s5ms`, or a plain number of seconds. Milliseconds.
pub fn parse_time_ms(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok()?.checked_mul(1000);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    let mut last_rank = 6;
    while i < b.len() {
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if st == i {
            return None;
        }
        let n: u64 = s[st..i].parse().ok()?;
        let us = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let (mult, rank) = match &s[us..i] {
            "d" => (86_400_000, 5),
            "h" => (3_600_000, 4),
            "m" => (60_000, 3),
            "s" => (1000, 2),
            "ms" => (1, 1),
            _ => return None,
        };
        if rank >= last_rank {
            return None;
        }
        last_rank = rank;
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(total)
}

/// Finds the files an `include` names: an absolute path, or relative to the including file's
/// directory, the current directory, and then the include path. Globs that match nothing are
/// not an error; a plain path that does not exist is.
pub fn resolve_include(
    path: &str,
    including: &Path,
    dirs: &[PathBuf],
) -> std::result::Result<Vec<PathBuf>, String> {
    let is_glob = path.contains(['*', '?', '[']);
    let mut candidates: Vec<PathBuf> = vec![];
    let p = Path::new(path);
    if p.is_absolute() {
        candidates.push(p.to_path_buf());
    } else {
        if let Some(d) = including.parent() {
            candidates.push(d.join(p));
        }
        candidates.push(p.to_path_buf());
        for d in dirs {
            candidates.push(d.join(p));
        }
    }
    if is_glob {
        for c in &candidates {
            let pat = c.to_string_lossy().to_string();
            if let Ok(paths) = glob::glob(&pat) {
                let mut v: Vec<PathBuf> = paths
                    .filter_map(|r| r.ok())
                    .filter(|p| p.is_file())
                    .collect();
                if !v.is_empty() {
                    v.sort();
                    return Ok(v);
                }
            }
        }
        return Ok(vec![]);
    }
    for c in &candidates {
        if c.is_file() {
            return Ok(vec![c.clone()]);
        }
    }
    Err(format!("File not found: {path}"))
}
