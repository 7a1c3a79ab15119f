//! The nft language: lexer, parser, evaluator, printer, libnftables JSON.

#![forbid(unsafe_code)]

pub mod ast;
mod bitwise;
pub mod datatype;
mod deps;
pub mod error;
pub mod eval;
mod flags;
mod inner;
pub mod json;
pub mod json_in;
pub mod lexer;
pub mod parser;
pub mod print;
pub mod proto;
mod protoctx;
pub mod ruleset;
mod services;
pub mod setelem;
mod setorder;
pub mod stmt_eval;
