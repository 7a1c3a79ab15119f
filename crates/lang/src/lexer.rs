//! The nft lexer.
//!
//! nft's scanner is context sensitive in a few places (addresses with `:` and `.`, strings that
//! carry `-` and `/`). We keep it simple and lossless: a *word* is a maximal run of characters
//! that can appear in a symbol, number, address, interface name or time (`br-lan`, `10.0.0.0/8`,
//! `fe80::/10`, `1m7s`, `port-unreachable`), and the parser and evaluator split words further
//! once they know the type they expect (a range `33-45`, a prefix, a rate `400/minute`).
//! A `:` belongs to a word only when the word is then an IPv6 or MAC address; otherwise it is
//! a token of its own (`25:accept` in a verdict map is three tokens).

use crate::error::Span;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Word(String),
    /// A double-quoted string, without its quotes.
    Str(String),
    /// `$name`
    Var(String),
    /// `@name` (set reference) or `@` before a raw payload base (`@nh,0,8`): the word after `@`.
    At(String),
    Newline,
    Semi,
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Dot,
    Slash,
    Dash,
    Plus,
    Star,
    Eq,
    EqEq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Amp,
    Pipe,
    Caret,
    Tilde,
    Shl,
    Shr,
    Bang,
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("string \"{w}\""),
            Tok::Str(s) => format!("quoted string \"{s}\""),
            Tok::Var(v) => format!("variable \"${v}\""),
            Tok::At(v) => format!("\"@{v}\""),
            Tok::Newline => "newline".into(),
            Tok::Eof => "end of file".into(),
            // nft's names for its tokens (nft 1.0.6's own errors): some by name, some quoted,
            // the rest as they are written
            Tok::Semi => "semicolon".into(),
            Tok::Comma => "comma".into(),
            Tok::Colon => "colon".into(),
            Tok::Tilde => "junk".into(),
            Tok::LBrace
            | Tok::RBrace
            | Tok::LParen
            | Tok::RParen
            | Tok::LBracket
            | Tok::RBracket
            | Tok::Eq
            | Tok::Pipe => format!("'{}'", self.text()),
            t => t.text(),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Var(v) => format!("${v}"),
            Tok::At(v) => format!("@{v}"),
            Tok::Newline => "\n".into(),
            Tok::Semi => ";".into(),
            Tok::LBrace => "{".into(),
            Tok::RBrace => "}".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::LBracket => "[".into(),
            Tok::RBracket => "]".into(),
            Tok::Comma => ",".into(),
            Tok::Colon => ":".into(),
            Tok::Dot => ".".into(),
            Tok::Slash => "/".into(),
            Tok::Dash => "-".into(),
            Tok::Plus => "+".into(),
            Tok::Star => "*".into(),
            Tok::Eq => "=".into(),
            Tok::EqEq => "==".into(),
            Tok::Ne => "!=".into(),
            Tok::Lt => "<".into(),
            Tok::Gt => ">".into(),
            Tok::Le => "<=".into(),
            Tok::Ge => ">=".into(),
            Tok::Amp => "&".into(),
            Tok::Pipe => "|".into(),
            Tok::Caret => "^".into(),
            Tok::Tilde => "~".into(),
            Tok::Shl => "<<".into(),
            Tok::Shr => ">>".into(),
            Tok::Bang => "!".into(),
            Tok::Eof => "".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
    /// Whitespace (or a comment) came right before this token.
    pub space_before: bool,
}

#[derive(Debug)]
pub struct LexError {
    pub span: Span,
    pub msg: String,
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'/' | b'*' | b'\\' | b':')
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'\\')
}

/// A tc class id, `major:minor` in hex (`1:bbf8`): one token, as in nft's scanner.
fn is_classid(w: &str) -> bool {
    let hex = |p: &str| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit());
    matches!(w.split_once(':'), Some((a, b)) if hex(a) && hex(b))
}

/// True if `w` (with an optional `/len` and `-` range) reads as IPv6 or MAC addresses, the only
/// words that may hold a `:`.
fn colon_word_ok(w: &str) -> bool {
    let body = match w.split_once('/') {
        Some((a, l)) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => a,
        Some(_) => return false,
        None => w,
    };
    let addr_ok = |s: &str| s.parse::<std::net::Ipv6Addr>().is_ok() || is_mac(s);
    if addr_ok(body) {
        return true;
    }
    match body.split_once('-') {
        Some((a, b)) => addr_ok(a) && addr_ok(b),
        None => false,
    }
}

/// A traffic-control class id (`1:1234`, `bcad:dadc`) is one word when what follows cannot
/// continue it: blank, end, `:`, `-`, `}` or `,` (nft's scanner rule), so `25:accept` in a
/// verdict map still splits at the colon.
fn classid_len(b: &[u8]) -> Option<usize> {
    let hex_run = |s: &[u8]| {
        s.iter()
            .take(5)
            .take_while(|c| c.is_ascii_hexdigit())
            .count()
    };
    let a = hex_run(b);
    if a == 0 || a > 4 || b.get(a) != Some(&b':') {
        return None;
    }
    let c = hex_run(&b[a + 1..]);
    if c == 0 || c > 4 {
        return None;
    }
    let n = a + 1 + c;
    match b.get(n) {
        None | Some(b' ' | b'\t' | b'\r' | b'\n' | b'-' | b'}' | b',') => Some(n),
        // `1:2:3::4` is an address; only a lone colon ends a class id
        Some(b':') if matches!(b.get(n + 1), None | Some(b' ' | b'\t')) => Some(n),
        _ => None,
    }
}

/// Link-layer addresses are written as colon-separated hex bytes (`00:11:22:33:44:55`,
/// and longer for `ll` addresses).
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts.len() >= 6
}

pub fn lex(file: u32, src: &str) -> Result<Vec<Token>, LexError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut space = true;
    let sp = |lo: usize, hi: usize| Span {
        file,
        lo: lo as u32,
        hi: hi as u32,
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' => {
                i += 1;
                space = true;
                continue;
            }
            b'\\'
                if i + 1 < b.len()
                    && (b[i + 1] == b'\n'
                        || (b[i + 1] == b'\r' && b.get(i + 2) == Some(&b'\n'))) =>
            {
                // line continuation
                i += if b[i + 1] == b'\r' { 3 } else { 2 };
                space = true;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                space = true;
                continue;
            }
            b'\n' => {
                out.push(Token {
                    tok: Tok::Newline,
                    span: sp(i, i + 1),
                    space_before: space,
                });
                i += 1;
                space = true;
                continue;
            }
            b'"' => {
                let start = i;
                i += 1;
                let s = i;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                if i >= b.len() {
                    return Err(LexError {
                        span: sp(start, b.len()),
                        msg: "unterminated string".into(),
                    });
                }
                let text = src[s..i].to_string();
                i += 1;
                out.push(Token {
                    tok: Tok::Str(text),
                    span: sp(start, i),
                    space_before: space,
                });
                space = false;
                continue;
            }
            b'$' | b'@' => {
                let start = i;
                i += 1;
                let s = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'-' | b'.' | b'/'))
                {
                    i += 1;
                }
                let name = src[s..i].to_string();
                let tok = if c == b'$' {
                    Tok::Var(name)
                } else {
                    Tok::At(name)
                };
                out.push(Token {
                    tok,
                    span: sp(start, i),
                    space_before: space,
                });
                space = false;
                continue;
            }
            _ => {}
        }
        if let Some(n) = classid_len(&b[i..]) {
            out.push(Token {
                tok: Tok::Word(src[i..i + n].to_string()),
                span: sp(i, i + n),
                space_before: space,
            });
            i += n;
            space = false;
            continue;
        }
        // a word, possibly starting with ':' for IPv6 (`::1`)
        let colon_start = c == b':' && b.get(i + 1) == Some(&b':');
        let lone_dot = c == b'.' && !b.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric());
        if (is_word_start(c) && !lone_dot) || colon_start {
            let start = i;
            let mut j = i;
            while j < b.len() && is_word_char(b[j]) {
                j += 1;
            }
            // a trailing '.' or '-' never belongs to a word
            let mut w = &src[start..j];
            if w.contains(':')
                && !colon_word_ok(w.trim_end_matches(['.', ',']).trim_end_matches('-'))
                && !is_classid(w)
            {
                // try the longest prefix (ending before some ':') that is an address
                let mut cut = None;
                if let Some(p) = w.find(':') {
                    cut = Some(p);
                }
                // "[::1]:80" style is lexed via brackets; here just cut at the first ':'
                // unless the prefix up to a later ':' is an address (`::1:`... rare)
                let mut k = w.len();
                while let Some(p) = w[..k].rfind(':') {
                    if p > 0 && colon_word_ok(&w[..p]) {
                        cut = Some(p);
                        break;
                    }
                    k = p;
                }
                match cut {
                    Some(0) => {
                        // ':' alone
                        out.push(Token {
                            tok: Tok::Colon,
                            span: sp(i, i + 1),
                            space_before: space,
                        });
                        i += 1;
                        space = false;
                        continue;
                    }
                    Some(p) => {
                        j = start + p;
                        w = &src[start..j];
                    }
                    None => {}
                }
            }
            while w.len() > 1 && (w.ends_with('-')) {
                j -= 1;
                w = &src[start..j];
            }
            out.push(Token {
                tok: Tok::Word(w.to_string()),
                span: sp(start, j),
                space_before: space,
            });
            i = j;
            space = false;
            continue;
        }
        let two = if i + 1 < b.len() {
            Some(b[i + 1])
        } else {
            None
        };
        let (tok, len) = match (c, two) {
            (b'=', Some(b'=')) => (Tok::EqEq, 2),
            (b'!', Some(b'=')) => (Tok::Ne, 2),
            (b'<', Some(b'=')) => (Tok::Le, 2),
            (b'>', Some(b'=')) => (Tok::Ge, 2),
            (b'<', Some(b'<')) => (Tok::Shl, 2),
            (b'>', Some(b'>')) => (Tok::Shr, 2),
            (b'=', _) => (Tok::Eq, 1),
            (b'!', _) => (Tok::Bang, 1),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b';', _) => (Tok::Semi, 1),
            (b',', _) => (Tok::Comma, 1),
            (b':', _) => (Tok::Colon, 1),
            (b'.', _) => (Tok::Dot, 1),
            (b'/', _) => (Tok::Slash, 1),
            (b'-', _) => (Tok::Dash, 1),
            (b'+', _) => (Tok::Plus, 1),
            (b'*', _) => (Tok::Star, 1),
            (b'&', _) => (Tok::Amp, 1),
            (b'|', _) => (Tok::Pipe, 1),
            (b'^', _) => (Tok::Caret, 1),
            (b'~', _) => (Tok::Tilde, 1),
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(LexError {
                    span: sp(i, i + ch.len_utf8()),
                    msg: format!("syntax error, unexpected character '{ch}'"),
                });
            }
        };
        out.push(Token {
            tok,
            span: sp(i, i + len),
            space_before: space,
        });
        i += len;
        space = false;
    }
    out.push(Token {
        tok: Tok::Eof,
        span: sp(b.len(), b.len()),
        space_before: true,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Tok> {
        lex(0, s)
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .filter(|t| *t != Tok::Eof)
            .collect()
    }

    #[test]
    fn addresses_and_words() {
        assert_eq!(
            words("ip6 saddr fe80::/10"),
            vec![
                Tok::Word("ip6".into()),
                Tok::Word("saddr".into()),
                Tok::Word("fe80::/10".into())
            ]
        );
        assert_eq!(words("::1"), vec![Tok::Word("::1".into())]);
        assert_eq!(
            words("25:accept"),
            vec![
                Tok::Word("25".into()),
                Tok::Colon,
                Tok::Word("accept".into())
            ]
        );
        assert_eq!(
            words("00:11:22:33:44:55"),
            vec![Tok::Word("00:11:22:33:44:55".into())]
        );
        assert_eq!(
            words("1.2.3.4:80"),
            vec![
                Tok::Word("1.2.3.4".into()),
                Tok::Colon,
                Tok::Word("80".into())
            ]
        );
        assert_eq!(
            words("iifname br-lan"),
            vec![Tok::Word("iifname".into()), Tok::Word("br-lan".into())]
        );
        assert_eq!(
            words("a \\\n b # c\n"),
            vec![Tok::Word("a".into()), Tok::Word("b".into()), Tok::Newline]
        );
        assert_eq!(
            words("$x @s != \"q w\""),
            vec![
                Tok::Var("x".into()),
                Tok::At("s".into()),
                Tok::Ne,
                Tok::Str("q w".into())
            ]
        );
    }
}
