//! Layer rules on hand-made tars, reference parsing, and property tests:
//! arbitrary or mutated tars, archives and JSON documents never panic.

use super::merge::{components, MKind, Merged};
use super::{Image, ImageRef, Transport};
use proptest::prelude::*;
use std::path::PathBuf;

/// One tar entry: (path, type, data or link target).
#[derive(Clone, Copy)]
enum E<'a> {
    F(&'a str, &'a str),
    D(&'a str),
    L(&'a str, &'a str),
    S(&'a str, &'a str),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1000);
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&str, &[u8]) = match *e {
            E::F(p, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (p, d.as_bytes())
            }
            E::D(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, b"")
            }
            E::L(p, t) | E::S(p, t) => {
                h.set_entry_type(if matches!(e, E::L(..)) {
                    tar::EntryType::Link
                } else {
                    tar::EntryType::Symlink
                });
                h.set_mode(0o777);
                h.set_link_name(t).unwrap();
                (p, b"")
            }
        };
        h.set_size(data.len() as u64);
        // set_path refuses `..`; write the name bytes directly.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn apply(layers: &[&[E]]) -> Result<Merged, String> {
    let mut m = Merged::new();
    for (i, l) in layers.iter().enumerate() {
        m.apply(&mut &tar_of(l)[..], i as u32)?;
    }
    Ok(m)
}

/// Paths of the reachable tree (walk order), with `/` after directories.
fn paths(m: &Merged) -> Vec<String> {
    let mut v = Vec::new();
    m.walk::<(), _>(|p, id| {
        let mut s = String::from_utf8_lossy(p).into_owned();
        if matches!(m.nodes[id].kind, MKind::Dir(_)) {
            s.push('/');
        }
        v.push(s);
        Ok(())
    })
    .unwrap();
    v
}

fn node(m: &Merged, p: &str) -> usize {
    let mut found = None;
    m.walk::<(), _>(|q, id| {
        if q == p.as_bytes() {
            found = Some(id);
        }
        Ok(())
    })
    .unwrap();
    found.unwrap_or_else(|| panic!("{p} not in {:?}", paths(m)))
}

#[test]
fn whiteouts_hide_lower_layers_only() {
    let m = apply(&[
        &[
            E::D("d"),
            E::F("d/a", "1"),
            E::F("d/b", "2"),
            E::F("x", "x"),
        ],
        &[
            E::F("d/.wh.a", ""),
            E::F("d/c", "3"),
            E::F("d/.wh.c", ""),
            E::F(".wh.x", ""),
        ],
    ])
    .unwrap();
    // d/c comes from the same layer as its whiteout: kept.
    assert_eq!(paths(&m), ["./", "d/", "d/b", "d/c"].map(String::from));
}

#[test]
fn opaque_dir_keeps_its_own_layer_wherever_the_marker_is() {
    let m = apply(&[
        &[
            E::D("o"),
            E::F("o/old", ""),
            E::D("o/sub"),
            E::F("o/sub/deep", ""),
        ],
        &[
            E::F("o/before", ""),
            E::F("o/.wh..wh..opq", ""),
            E::F("o/after", ""),
        ],
    ])
    .unwrap();
    assert_eq!(
        paths(&m),
        ["./", "o/", "o/after", "o/before"].map(String::from)
    );
}

#[test]
fn dir_over_dir_merges_and_file_over_dir_replaces() {
    let m = apply(&[
        &[
            E::D("a"),
            E::F("a/keep", "k"),
            E::D("b"),
            E::F("b/lost", ""),
        ],
        &[E::D("a"), E::F("b", "now a file")],
    ])
    .unwrap();
    assert_eq!(paths(&m), ["./", "a/", "a/keep", "b"].map(String::from));
}

#[test]
fn hard_links_across_layers_and_replacement() {
    let m = apply(&[
        &[E::F("f", "data")],
        &[E::L("g", "f"), E::L("h", "./f")],
        &[E::F("f", "new")],
    ])
    .unwrap();
    let (f, g, h) = (node(&m, "f"), node(&m, "g"), node(&m, "h"));
    assert_eq!(g, h);
    assert_ne!(
        f, g,
        "replacing f gives f a new inode; g and h keep the old one"
    );
    match m.nodes[g].kind {
        MKind::File { layer, size, .. } => assert_eq!((layer, size), (0, 4)),
        ref k => panic!("{k:?}"),
    }
    assert!(apply(&[&[E::L("x", "missing")]])
        .unwrap_err()
        .contains("no such file"));
    assert!(apply(&[&[E::D("d"), E::L("x", "d")]])
        .unwrap_err()
        .contains("directory"));
}

#[test]
fn escapes_are_refused() {
    for (layers, what) in [
        (vec![vec![E::F("../x", "")]], "'..'"),
        (vec![vec![E::F("a/../../x", "")]], "'..'"),
        (vec![vec![E::F("/etc/x", "")]], "absolute"),
        (
            vec![vec![E::S("l", "/etc"), E::F("l/x", "")]],
            "symbolic link /l",
        ),
        (
            vec![vec![E::S("l", ".")], vec![E::F("l/x", "")]],
            "symbolic link /l",
        ),
        (
            vec![vec![E::S("l", "/")], vec![E::F("l/.wh.x", "")]],
            "symbolic link /l",
        ),
        (
            vec![vec![E::F("l", "")], vec![E::F("l/x", "")]],
            "not a directory",
        ),
        (vec![vec![E::F("f", "")], vec![E::L("g", "../f")]], "'..'"),
        (
            vec![vec![E::S("l", "/etc"), E::L("g", "l/passwd")]],
            "symbolic link",
        ),
    ] {
        let refs: Vec<&[E]> = layers.iter().map(|l| l.as_slice()).collect();
        let e = apply(&refs).unwrap_err();
        assert!(e.contains(what), "{e} should say {what}");
    }
    // The root written as "/" or "./" is the root.
    let m = apply(&[&[E::D("/"), E::D("./"), E::F("./a", "")]]).unwrap();
    assert_eq!(paths(&m), ["./", "a"].map(String::from));
    assert_eq!(components(b"./a//b/.").unwrap(), [b"a" as &[u8], b"b"]);
}

#[test]
fn truncation_is_an_error_missing_end_blocks_are_not() {
    let t = tar_of(&[E::F("a", &"x".repeat(3000))]);
    // Without the two end blocks and the last data block's padding.
    let data_end = 512 + 3000;
    assert!(Merged::new().apply(&mut &t[..data_end], 0).is_ok());
    let e = Merged::new().apply(&mut &t[..data_end - 1], 0).unwrap_err();
    assert!(e.contains("truncated"), "{e}");
    let e = Merged::new().apply(&mut &t[..300], 0).unwrap_err();
    assert!(e.contains("truncated") || e.contains("corrupt"), "{e}");
}

#[test]
fn references() {
    let r = ImageRef::parse("oci:/no/such/layout:app:1").unwrap();
    assert_eq!(r.transport, Transport::Oci);
    assert_eq!(r.path, PathBuf::from("/no/such/layout"));
    assert_eq!(r.reference.as_deref(), Some("app:1"));
    let r = ImageRef::parse("docker-archive:x.tar").unwrap();
    assert_eq!((r.transport, r.reference), (Transport::DockerArchive, None));
    assert_eq!(
        ImageRef::parse("oci-archive:a.tar:").unwrap().reference,
        None
    );
    assert!(ImageRef::parse("appdir").is_none());
    assert!(ImageRef::parse("docker://busybox").is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_tar_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Merged::new().apply(&mut &bytes[..], 0);
    }

    #[test]
    fn mutated_tars_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut t = tar_of(&[
            E::D("d"), E::F("d/a", "hello"), E::L("d/b", "d/a"), E::S("s", "d"),
            E::F("d/.wh.a", ""), E::F("d/.wh..wh..opq", ""),
        ]);
        for (i, v) in flips {
            let k = i.index(t.len());
            t[k] ^= v;
        }
        let n = cut.index(t.len() + 1);
        let mut m = Merged::new();
        if m.apply(&mut &t[..n], 0).is_ok() {
            // Whatever was accepted converts and walks.
            let _ = m.to_ext2();
            let _ = m.count();
        }
    }

    #[test]
    fn mutated_layouts_never_panic(
        index in proptest::collection::vec(any::<u8>(), 0..300),
        which in 0usize..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("blobs/sha256")).unwrap();
        let layout: &[u8] = br#"{"imageLayoutVersion": "1.0.0"}"#;
        let good_index = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2}]}"#;
        let (l, i): (&[u8], &[u8]) = match which {
            0 => (layout, &index),
            1 => (&index, good_index),
            _ => (layout, good_index),
        };
        std::fs::write(d.join("oci-layout"), l).unwrap();
        std::fs::write(d.join("index.json"), i).unwrap();
        std::fs::write(
            d.join("blobs/sha256/0000000000000000000000000000000000000000000000000000000000000000"),
            &index,
        ).unwrap();
        let r = ImageRef { transport: Transport::Oci, path: d.to_path_buf(), reference: None };
        prop_assert!(Image::open(&r).is_err());
    }

    #[test]
    fn mutated_archives_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut t = tar_of(&[E::F("manifest.json", "[]"), E::F("oci-layout", "{}")]);
        for (i, v) in flips {
            let k = i.index(t.len());
            t[k] ^= v;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        std::fs::write(&p, &t).unwrap();
        for transport in [Transport::OciArchive, Transport::DockerArchive] {
            let r = ImageRef { transport, path: p.clone(), reference: None };
            let _ = Image::open(&r);
        }
    }
}
