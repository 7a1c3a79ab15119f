//! The Rust mirror of the offload program's map structs has the C layout: every struct's size
//! and every field's name, offset and size equal what the BTF of the built object says.

use nft_xdp::offload::OFFLOAD_OBJECT;
use nft_xdp::offload_layout::{btf_struct, layouts};

#[test]
fn rust_structs_match_the_btf_of_the_built_object() {
    let Some(obj) = OFFLOAD_OBJECT else {
        assert!(!nft_xdp::built());
        nft_io::netns::skip("offload_layout", nft_xdp::NOT_BUILT);
        return;
    };
    for (name, size, fields) in layouts() {
        let (c_size, members) = btf_struct(obj, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(size, c_size, "size of struct {name}");
        let rust: Vec<(String, usize, usize)> = fields
            .iter()
            .map(|(n, o, s)| (n.to_string(), *o, *s))
            .collect();
        assert_eq!(
            rust, members,
            "fields of struct {name} (name, offset, size)"
        );
    }
}

#[test]
fn the_reader_sees_a_diverging_layout() {
    let Some(obj) = OFFLOAD_OBJECT else {
        nft_io::netns::skip("offload_layout", nft_xdp::NOT_BUILT);
        return;
    };
    // The reader must give real offsets: a key whose `ifindex` moved would be noticed.
    let (_, members) = btf_struct(obj, "offload_key").expect("offload_key in BTF");
    let ifindex = members.iter().find(|m| m.0 == "ifindex").expect("ifindex");
    assert_eq!((ifindex.1, ifindex.2), (36, 4));
    assert!(btf_struct(obj, "no_such_struct").is_err());
}
