//! In-place NAT rewrites that keep every checksum right with RFC 1624 incremental updates.
