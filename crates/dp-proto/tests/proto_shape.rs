//! Guards the wire shape of `proto/dpdk.proto`.
//!
//! The proto is compiled with protox and reduced to a canonical text form
//! (package, enums and values, messages with field names, numbers, labels,
//! types and oneofs, service methods with their types). That form must equal
//! the checked-in `dpdk_proto.shape`, which was verified once against
//! ironcore dpservice's own `dpdk.proto`.
//!
//! To repeat that verification, point `DP_PROTO_REFERENCE` at the directory
//! holding the reference `dpdk.proto`:
//! `DP_PROTO_REFERENCE=/tmp/dps/proto cargo test -p dp-proto --test proto_shape`

use std::fmt::Write as _;
use std::path::Path;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

fn shape_of(dir: &Path) -> String {
    let fds: FileDescriptorSet =
        protox::compile(["dpdk.proto"], [dir]).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let file = fds
        .file
        .iter()
        .find(|f| f.name() == "dpdk.proto")
        .expect("dpdk.proto in descriptor set");
    let mut out = String::new();
    writeln!(out, "package {}", file.package()).unwrap();
    writeln!(out, "syntax {}", file.syntax()).unwrap();

    let mut enums: Vec<_> = file.enum_type.iter().collect();
    enums.sort_by_key(|e| e.name().to_owned());
    for e in enums {
        writeln!(out, "enum {}", e.name()).unwrap();
        for v in &e.value {
            writeln!(out, "  {} = {}", v.name(), v.number()).unwrap();
        }
    }

    let mut msgs: Vec<_> = file.message_type.iter().collect();
    msgs.sort_by_key(|m| m.name().to_owned());
    for m in msgs {
        message_shape(&mut out, m, "");
    }

    for s in &file.service {
        writeln!(out, "service {}", s.name()).unwrap();
        let mut methods: Vec<_> = s.method.iter().collect();
        methods.sort_by_key(|m| m.name().to_owned());
        for m in methods {
            writeln!(
                out,
                "  rpc {}({}{}) returns ({}{})",
                m.name(),
                if m.client_streaming() { "stream " } else { "" },
                m.input_type(),
                if m.server_streaming() { "stream " } else { "" },
                m.output_type()
            )
            .unwrap();
        }
    }
    out
}

fn message_shape(out: &mut String, m: &DescriptorProto, outer: &str) {
    let name = format!("{outer}{}", m.name());
    writeln!(out, "message {name}").unwrap();
    let mut fields: Vec<_> = m.field.iter().collect();
    fields.sort_by_key(|f| f.number());
    for f in fields {
        let ty = match f.r#type() {
            Type::Message | Type::Enum => f.type_name().to_owned(),
            t => t.as_str_name().trim_start_matches("TYPE_").to_lowercase(),
        };
        let label = match f.label() {
            Label::Repeated => "repeated ",
            Label::Required => "required ",
            Label::Optional if f.proto3_optional() => "optional ",
            Label::Optional => "",
        };
        let oneof = match f.oneof_index {
            Some(i) if !f.proto3_optional() => {
                format!(" oneof {}", m.oneof_decl[i as usize].name())
            }
            _ => String::new(),
        };
        writeln!(out, "  {} = {}: {label}{ty}{oneof}", f.name(), f.number()).unwrap();
    }
    for n in &m.nested_type {
        message_shape(out, n, &format!("{name}."));
    }
    for e in &m.enum_type {
        writeln!(out, "enum {name}.{}", e.name()).unwrap();
        for v in &e.value {
            writeln!(out, "  {} = {}", v.name(), v.number()).unwrap();
        }
    }
}

fn our_proto_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

#[test]
fn proto_matches_golden_shape() {
    let shape = shape_of(&our_proto_dir());
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dpdk_proto.shape");
    if std::env::var_os("DP_PROTO_BLESS").is_some() {
        std::fs::write(&golden_path, &shape).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap();
    assert_eq!(
        shape, golden,
        "proto/dpdk.proto changed shape; see tests/dpdk_proto.shape"
    );
}

#[test]
fn proto_has_expected_counts() {
    let shape = shape_of(&our_proto_dir());
    let count = |p: &str| shape.lines().filter(|l| l.starts_with(p)).count();
    assert_eq!(count("enum "), 7);
    assert_eq!(count("  rpc "), 42);
    assert_eq!(count("message "), 104);
    assert!(shape.contains("package dpdkironcore.v1\n"));
    assert!(shape.contains("service DPDKironcore\n"));
    assert!(shape.contains("  meteringParams = 7: .dpdkironcore.v1.MeteringParams\n"));
}

#[test]
fn proto_matches_reference_if_given() {
    let Some(dir) = std::env::var_os("DP_PROTO_REFERENCE") else {
        eprintln!("DP_PROTO_REFERENCE not set; skipping comparison with the reference proto");
        return;
    };
    let theirs = shape_of(Path::new(&dir));
    let ours = shape_of(&our_proto_dir());
    if theirs != ours {
        let a: Vec<_> = theirs.lines().collect();
        let b: Vec<_> = ours.lines().collect();
        let only_ref: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_ours: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
        panic!("shape differs\nonly in reference: {only_ref:#?}\nonly in ours: {only_ours:#?}");
    }
}
