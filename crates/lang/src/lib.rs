//! The nft language: lexer, parser, evaluator, printer, libnftables JSON.

pub mod datatype;
pub mod proto;
