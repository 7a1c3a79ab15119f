//! The nft language: lexer, parser, evaluator, printer, libnftables JSON.

#![forbid(unsafe_code)]

pub mod datatype;
mod services;
pub mod proto;
pub mod ast;
pub mod error;
pub mod lexer;
pub mod parser;
pub mod eval;
mod inner;
pub mod stmt_eval;
mod flags;
mod deps;
pub mod print;
pub mod ruleset;
pub mod setelem;
pub mod json;
pub mod json_in;
mod protoctx;
mod setorder;
