//! The nft language: lexer, parser, evaluator, printer, libnftables JSON.

pub mod datatype;
mod services;
pub mod proto;
