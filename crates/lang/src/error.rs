//! Source locations and errors in nft's format:
//!
//! ```text
//! rules.nft:3:20-25: Error: Could not resolve service: Servname not found in nft services list
//! add rule ip t c tcp dport sshhh accept
//!                           ^^^^^
//! ```

use std::fmt;

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: u32,
    pub lo: u32,
    pub hi: u32,
}

impl Span {
    pub fn to(self, other: Span) -> Span {
        if other.file != self.file {
            return self;
        }
        Span {
            file: self.file,
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Every file read while loading a ruleset (the main file and its includes).
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    pub files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> u32 {
        self.files.push(SourceFile {
            name: name.into(),
            text: text.into(),
        });
        (self.files.len() - 1) as u32
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, file: u32, off: u32) -> (usize, usize) {
        let Some(f) = self.files.get(file as usize) else {
            return (0, 0);
        };
        let off = (off as usize).min(f.text.len());
        let before = &f.text.as_bytes()[..off];
        let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
        let col = off
            - before
                .iter()
                .rposition(|&c| c == b'\n')
                .map(|p| p + 1)
                .unwrap_or(0)
            + 1;
        (line, col)
    }

    pub fn render(&self, e: &Error) -> String {
        let Some(span) = e.span else {
            return format!("Error: {}\n", e.msg);
        };
        let Some(f) = self.files.get(span.file as usize) else {
            return format!("Error: {}\n", e.msg);
        };
        let (line, col) = self.line_col(span.file, span.lo);
        let hi = span.hi.max(span.lo + 1);
        let (_, col_hi) = self.line_col(span.file, hi - 1);
        let line_start = f.text[..(span.lo as usize).min(f.text.len())]
            .rfind('\n')
            .map(|p| p + 1)
            .unwrap_or(0);
        let line_end = f.text[line_start..]
            .find('\n')
            .map(|p| p + line_start)
            .unwrap_or(f.text.len());
        let src_line = &f.text[line_start..line_end];
        let col_hi = if col_hi < col { col } else { col_hi };
        let width = (col_hi - col + 1).min(src_line.len().saturating_sub(col - 1).max(1));
        // one blank per byte before the column, tabs kept, as nft pads: columns count bytes
        let mut caret: String = src_line.as_bytes()[..(col - 1).min(src_line.len())]
            .iter()
            .map(|&b| if b == b'\t' { '\t' } else { ' ' })
            .collect();
        caret.push_str(&"^".repeat(width));
        // nft's first line, source line and carets; any further explanation follows them
        let (first, rest) = match e.msg.split_once('\n') {
            Some((a, b)) => (a, format!("{b}\n")),
            None => (e.msg.as_str(), String::new()),
        };
        format!(
            "{}:{}:{}-{}: Error: {}\n{}\n{}\n{}",
            f.name, line, col, col_hi, first, src_line, caret, rest
        )
    }
}

/// An error from any stage (lexing, parsing, evaluation), with the place it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub span: Option<Span>,
    pub msg: String,
}

impl Error {
    pub fn new(span: Span, msg: impl Into<String>) -> Error {
        Error {
            span: Some(span),
            msg: msg.into(),
        }
    }
    pub fn nospan(msg: impl Into<String>) -> Error {
        Error {
            span: None,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns and carets count bytes: after "é" (two bytes) and tabs, nft 1.0.6 prints this.
    #[test]
    fn columns_and_padding_count_bytes() {
        let text = "table inet t {\n\tchain c {\n\t\tmeta mark 1 comment \"\u{e9}\"\t\ttcp dport sshhhh accept\n\t}\n}\n";
        let mut sm = SourceMap::default();
        let f = sm.add("e3.nft", text);
        let lo = text.find("tcp").unwrap() as u32;
        let e = Error::new(
            Span {
                file: f,
                lo,
                hi: lo + 3,
            },
            "syntax error, unexpected tcp, expecting newline or semicolon",
        );
        assert_eq!(
            sm.render(&e),
            format!(
                "e3.nft:3:29-31: Error: syntax error, unexpected tcp, expecting newline or semicolon\n\t\tmeta mark 1 comment \"\u{e9}\"\t\ttcp dport sshhhh accept\n\t\t{}\t\t^^^\n",
                " ".repeat(24)
            )
        );
    }
}
