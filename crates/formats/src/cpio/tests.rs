use super::*;
use proptest::prelude::*;
use std::io::Cursor;

fn file_meta(mode: u32) -> Meta {
    Meta {
        ino: 7,
        mode,
        uid: 1000,
        gid: 100,
        nlink: 1,
        mtime: 1_700_000_000,
        ..Meta::default()
    }
}

/// A header built by hand, the way another writer might lay it out.
fn raw_entry(magic: &[u8; 6], f: [u32; 13], name: &[u8], data: &[u8], upper: bool) -> Vec<u8> {
    let mut v = magic.to_vec();
    for x in f {
        let s = if upper {
            format!("{x:08X}")
        } else {
            format!("{x:08x}")
        };
        v.extend_from_slice(s.as_bytes());
    }
    v.extend_from_slice(name);
    v.push(0);
    while v.len() & 3 != 0 {
        v.push(0);
    }
    v.extend_from_slice(data);
    while v.len() & 3 != 0 {
        v.push(0);
    }
    v
}

/// Fields for `raw_entry`: ino, mode, uid, gid, nlink, mtime, filesize, 4 devs, namesize, check.
fn fields(ino: u32, mode: u32, nlink: u32, name: &[u8], data: &[u8], check: u32) -> [u32; 13] {
    [
        ino,
        mode,
        0,
        0,
        nlink,
        1,
        data.len() as u32,
        8,
        1,
        0,
        0,
        name.len() as u32 + 1,
        check,
    ]
}

fn trailer(magic: &[u8; 6]) -> Vec<u8> {
    raw_entry(
        magic,
        fields(0, 0, 1, TRAILER_NAME, b"", 0),
        TRAILER_NAME,
        b"",
        true,
    )
}

fn sample() -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    w.append_data(b".", &file_meta(0o040755), b"").unwrap();
    w.append_data(b"bin", &file_meta(0o040755), b"").unwrap();
    w.append_data(b"bin/hello", &file_meta(0o100755), b"hello world\n")
        .unwrap();
    w.append_data(b"bin/link", &file_meta(0o120777), b"hello")
        .unwrap();
    w.append_data(b"empty", &file_meta(0o100600), b"").unwrap();
    w.finish().unwrap()
}

#[test]
fn writer_layout_is_newc_upper_hex_padded() {
    let a = sample();
    assert_eq!(a.len() % 512, 0);
    assert_eq!(&a[..6], b"070701");
    // "." with mode 40755 (0x41ED), upper-case, name size 2, check 0.
    let first = std::str::from_utf8(&a[..110]).unwrap();
    let want = [
        "070701", "00000007", "000041ED", "000003E8", "00000064", "00000001", "6553F100",
        "00000000", "00000000", "00000000", "00000000", "00000000", "00000002", "00000000",
    ]
    .concat();
    assert_eq!(first, want);
    assert_eq!(&a[110..112], b".\0");
    // Header + name (112 bytes) is aligned, so the next header follows at once.
    assert_eq!(&a[112..118], b"070701");
    let pos = a.windows(10).position(|w| w == TRAILER_NAME).unwrap();
    assert!(a[pos + 11..].iter().all(|&b| b == 0));
}

#[test]
fn round_trip_both_readers() {
    let a = sample();
    let got: Vec<Entry> = entries(&a).collect::<Result<_, _>>().unwrap();
    let names: Vec<&[u8]> = got.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [&b"."[..], b"bin", b"bin/hello", b"bin/link", b"empty"]
    );
    assert_eq!(got[2].data, b"hello world\n");
    assert_eq!(got[2].meta, file_meta(0o100755));
    assert_eq!(got[2].file_type, FileType::Regular);
    assert_eq!(got[3].file_type, FileType::Symlink);
    assert_eq!(got[3].data, b"hello");
    assert_eq!(got[0].file_type, FileType::Directory);
    // Data borrows from the archive.
    let range = a.as_ptr_range();
    assert!(range.contains(&got[2].data.as_ptr()));

    let mut r = StreamReader::with_len(Cursor::new(&a), a.len() as u64);
    let mut n = 0;
    while let Some(e) = r.next_entry().unwrap() {
        assert_eq!(e.name, got[n].name);
        assert_eq!(e.meta, got[n].meta);
        assert_eq!(r.read_data_to_vec().unwrap(), got[n].data);
        n += 1;
    }
    assert_eq!(n, got.len());
    assert!(r.next_entry().unwrap().is_none());
}

#[test]
fn stream_reader_skips_unread_data_and_seeks() {
    let a = sample();
    let mut r = StreamReader::new(Cursor::new(&a));
    let mut names = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        names.push(e.name);
    }
    assert_eq!(names.len(), 5);
    let mut r = StreamReader::with_len(Cursor::new(&a), a.len() as u64);
    let mut names2 = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        r.skip_data().unwrap();
        names2.push(e.name);
    }
    assert_eq!(names, names2);
}

#[test]
fn reads_other_writers_lower_case_and_crc() {
    let mut a = Vec::new();
    a.extend(raw_entry(
        MAGIC_CRC,
        fields(1, 0o040755, 2, b".", b"", 0),
        b".",
        b"",
        false,
    ));
    let data = b"\xff\xfe data";
    let sum = data.iter().map(|&b| u32::from(b)).sum();
    a.extend(raw_entry(
        MAGIC_CRC,
        fields(2, 0o100644, 1, b"./f", data, sum),
        b"./f",
        data,
        false,
    ));
    a.extend(trailer(MAGIC_CRC));
    let got: Vec<Entry> = entries(&a).collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].data, data);
    assert_eq!(got[1].format, Format::Crc);
    assert_eq!(got[1].meta.dev_major, 8);

    // A wrong checksum is refused by both readers.
    let mut bad = a.clone();
    let p = bad.windows(5).position(|w| w == b" data").unwrap();
    bad[p] = b'X';
    let err = entries(&bad).find_map(Result::err).unwrap();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let mut r = StreamReader::new(Cursor::new(&bad));
    let mut err = None;
    loop {
        match r.next_entry() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert!(err.unwrap().to_string().contains("checksum mismatch"));
}

#[test]
fn gnu_hard_link_convention_is_visible() {
    // GNU cpio: the first link has nlink 2 and no data, the last has the data.
    let mut a = Vec::new();
    a.extend(raw_entry(
        MAGIC_NEWC,
        fields(9, 0o100644, 2, b"a", b"", 0),
        b"a",
        b"",
        true,
    ));
    a.extend(raw_entry(
        MAGIC_NEWC,
        fields(9, 0o100644, 2, b"b", b"xyz", 0),
        b"b",
        b"xyz",
        true,
    ));
    a.extend(trailer(MAGIC_NEWC));
    let got: Vec<Entry> = entries(&a).collect::<Result<_, _>>().unwrap();
    assert_eq!((got[0].meta.nlink, got[0].data), (2, &b""[..]));
    assert_eq!((got[1].meta.ino, got[1].data), (9, &b"xyz"[..]));
}

fn first_error(a: &[u8]) -> String {
    match entries(a).find_map(Result::err) {
        Some(e) => e.to_string(),
        None => panic!("archive accepted"),
    }
}

fn stream_error(a: &[u8], with_len: bool) -> String {
    let mut r = if with_len {
        StreamReader::with_len(Cursor::new(a), a.len() as u64)
    } else {
        StreamReader::new(Cursor::new(a))
    };
    loop {
        match r.next_entry() {
            Ok(Some(_)) => {
                if let Err(e) = r.read_data_to_vec() {
                    return e.to_string();
                }
            }
            Ok(None) => panic!("archive accepted"),
            Err(e) => return e.to_string(),
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let a = sample();
    let end = a.windows(10).position(|w| w == TRAILER_NAME).unwrap() + 10;
    for cut in 0..end {
        let t = &a[..cut];
        let e = first_error(t);
        assert!(
            e.contains("truncated") || e.contains("without a TRAILER"),
            "cut {cut}: {e}"
        );
        stream_error(t, true);
        stream_error(t, false);
    }
}

#[test]
fn absurd_sizes_and_bad_headers_are_refused() {
    let mut huge = raw_entry(
        MAGIC_NEWC,
        fields(1, 0o100644, 1, b"f", b"", 0),
        b"f",
        b"",
        true,
    );
    huge[54..62].copy_from_slice(b"FFFFFFFF");
    huge.extend(trailer(MAGIC_NEWC));
    let e = first_error(&huge);
    assert!(e.contains("4294967295 bytes of data"), "{e}");
    let e = stream_error(&huge, true);
    assert!(e.contains("4294967295 bytes of data"), "{e}");
    assert!(stream_error(&huge, false).contains("truncated"));

    let mut name = raw_entry(
        MAGIC_NEWC,
        fields(1, 0o100644, 1, b"f", b"", 0),
        b"f",
        b"",
        true,
    );
    name[94..102].copy_from_slice(b"7FFFFFFF");
    assert!(first_error(&name).contains("name size 2147483647"));
    assert!(stream_error(&name, false).contains("name size"));

    let cases: [(&[u8], u32, &[u8], &str); 5] = [
        (b"d", 0o040755, b"data", "Directory entry with 4 bytes"),
        (b"x", 0o000644, b"", "unknown file type"),
        (b"x", 0o1100644, b"", "stray bits"),
        (b"x", 0o100644, b"", ""),
        (b"c", 0o020644, b"1", "CharDev entry"),
    ];
    for (n, mode, data, want) in cases {
        let mut a = raw_entry(MAGIC_NEWC, fields(1, mode, 1, n, data, 0), n, data, true);
        a.extend(trailer(MAGIC_NEWC));
        if want.is_empty() {
            assert!(entries(&a).all(|e| e.is_ok()));
            continue;
        }
        let e = first_error(&a);
        assert!(
            e.contains(want) || want == "stray bits" && e.contains("bits beyond"),
            "{e}"
        );
        stream_error(&a, true);
    }

    let mut nul = raw_entry(
        MAGIC_NEWC,
        fields(1, 0o100644, 1, b"ab", b"", 0),
        b"ab",
        b"",
        true,
    );
    nul[110] = 0;
    assert!(first_error(&nul).contains("contains a NUL"));
    let mut unterminated = nul.clone();
    unterminated[110] = b'a';
    unterminated[112] = b'c';
    assert!(first_error(&unterminated).contains("not NUL-terminated"));
    let mut empty = raw_entry(
        MAGIC_NEWC,
        fields(1, 0o100644, 1, b"", b"", 0),
        b"",
        b"",
        true,
    );
    empty.extend(trailer(MAGIC_NEWC));
    assert!(first_error(&empty).contains("is empty"));
    let mut hex = sample();
    hex[10] = b'g';
    assert!(first_error(&hex).contains("field ino"));
    assert!(first_error(b"070707 old binary").contains("not a newc"));
    assert!(first_error(b"").contains("without a TRAILER"));
}

#[test]
fn safe_components_refuses_escapes() {
    assert_eq!(safe_components(b".").unwrap(), Vec::<&[u8]>::new());
    assert_eq!(
        safe_components(b"./a//b/.").unwrap(),
        vec![&b"a"[..], &b"b"[..]]
    );
    assert!(safe_components(b"/etc/passwd").is_err());
    assert!(safe_components(b"a/../../b").is_err());
    assert!(safe_components(b"..").is_err());
    assert_eq!(
        safe_components(b"a/..b").unwrap(),
        vec![&b"a"[..], &b"..b"[..]]
    );
}

#[test]
fn writer_refuses_what_newc_cannot_hold() {
    let mut w = Writer::new(Vec::new());
    let e = w
        .append_reader(b"big", &file_meta(0o100644), 1 << 32, std::io::empty())
        .unwrap_err();
    assert!(e.to_string().contains("at most 4 GiB"), "{e}");
    assert!(w.append_data(b"a\0b", &file_meta(0o100644), b"").is_err());
    assert!(w.append_data(b"", &file_meta(0o100644), b"").is_err());
    assert!(w
        .append_data(TRAILER_NAME, &file_meta(0o100644), b"")
        .is_err());
    assert!(w.append_data(b"d", &file_meta(0o040755), b"x").is_err());
    assert!(w.append_data(b"x", &file_meta(0o644), b"").is_err());
    let long = vec![b'a'; MAX_NAME_SIZE as usize];
    assert!(w.append_data(&long, &file_meta(0o100644), b"").is_err());
    let e = w
        .append_reader(b"short", &file_meta(0o100644), 10, &b"abc"[..])
        .unwrap_err();
    assert!(e.to_string().contains("ended after 3 of 10"), "{e}");
}

#[test]
fn large_data_crosses_the_buffer() {
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
    let mut w = Writer::new(Vec::new());
    w.append_data(b"small", &file_meta(0o100644), b"s").unwrap();
    w.append_reader(b"big", &file_meta(0o100644), data.len() as u64, &data[..])
        .unwrap();
    w.append_data(b"big2", &file_meta(0o100644), &data).unwrap();
    let a = w.finish().unwrap();
    let got: Vec<Entry> = entries(&a).collect::<Result<_, _>>().unwrap();
    assert_eq!(got[1].data, &data[..]);
    assert_eq!(got[2].data, &data[..]);
}

#[test]
fn append_with_writes_straight_to_the_output() {
    let mut w = Writer::new(Vec::new());
    w.append_data(b"a", &file_meta(0o100644), b"x").unwrap();
    w.append_with(b"b", &file_meta(0o100644), 5, |out| {
        out.extend_from_slice(b"12345");
        Ok(5)
    })
    .unwrap();
    w.append_data(b"c", &file_meta(0o100644), b"zz").unwrap();
    let e = w
        .append_with(b"d", &file_meta(0o100644), 5, |_| Ok(2))
        .unwrap_err();
    assert!(e.to_string().contains("copied 2 of 5"), "{e}");
    let mut w = Writer::new(Vec::new());
    w.append_data(b"a", &file_meta(0o100644), b"x").unwrap();
    w.append_with(b"b", &file_meta(0o100644), 5, |out| {
        out.extend_from_slice(b"12345");
        Ok(5)
    })
    .unwrap();
    w.append_data(b"c", &file_meta(0o100644), b"zz").unwrap();
    let a = w.finish().unwrap();
    let got: Vec<Entry> = entries(&a).collect::<Result<_, _>>().unwrap();
    let data: Vec<&[u8]> = got.iter().map(|e| e.data).collect();
    assert_eq!(data, [&b"x"[..], b"12345", b"zz"]);
}

fn arb_entry() -> impl Strategy<Value = (Vec<u8>, Meta, Vec<u8>)> {
    let types = prop_oneof![
        Just(0o100_000u32),
        Just(0o040_000),
        Just(0o120_000),
        Just(0o020_000),
        Just(0o010_000),
    ];
    (
        proptest::collection::vec(1u8..=255, 1..40),
        types,
        0u32..0o7777,
        any::<[u32; 8]>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(name, ty, perm, f, data)| {
            let meta = Meta {
                ino: f[0],
                mode: ty | perm,
                uid: f[1],
                gid: f[2],
                nlink: f[3],
                mtime: f[4],
                dev_major: f[5],
                dev_minor: f[6],
                rdev_major: f[7],
                rdev_minor: 3,
            };
            let data = if FileType::from_mode(ty).is_some_and(FileType::has_data) {
                data
            } else {
                Vec::new()
            };
            let name = if name == TRAILER_NAME {
                b"x".to_vec()
            } else {
                name
            };
            (name, meta, data)
        })
}

fn build(list: &[(Vec<u8>, Meta, Vec<u8>)]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    for (n, m, d) in list {
        w.append_data(n, m, d).unwrap();
    }
    w.finish().unwrap()
}

/// An entry's name, metadata and data, owned.
type Owned = (Vec<u8>, Meta, Vec<u8>);

/// Everything the stream reader yields, as comparable values.
fn stream_all(a: &[u8]) -> Vec<Result<Owned, ()>> {
    let mut r = StreamReader::with_len(Cursor::new(a), a.len() as u64);
    let mut out = Vec::new();
    loop {
        match r.next_entry() {
            Ok(Some(e)) => match r.read_data_to_vec() {
                Ok(d) => out.push(Ok((e.name, e.meta, d))),
                Err(_) => {
                    out.push(Err(()));
                    break;
                }
            },
            Ok(None) => break,
            Err(_) => {
                out.push(Err(()));
                break;
            }
        }
    }
    out
}

fn slice_all(a: &[u8]) -> Vec<Result<Owned, ()>> {
    entries(a)
        .map(|r| {
            r.map(|e| (e.name.to_vec(), e.meta, e.data.to_vec()))
                .map_err(|_| ())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn prop_round_trip(list in proptest::collection::vec(arb_entry(), 0..12)) {
        let a = build(&list);
        prop_assert_eq!(a.len() % 512, 0);
        let want: Vec<_> = list.iter().cloned().map(Ok).collect();
        prop_assert_eq!(slice_all(&a), want.clone());
        prop_assert_eq!(stream_all(&a), want);
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let n = entries(&bytes).count();
        prop_assert!(n <= bytes.len() / HEADER_LEN + 1);
        let _ = stream_all(&bytes);
        let mut r = StreamReader::new(Cursor::new(&bytes));
        while let Ok(Some(_)) = r.next_entry() {}
    }

    #[test]
    fn prop_header_like_garbage_never_panics(
        fields in proptest::collection::vec(any::<u32>(), 13),
        tail in proptest::collection::vec(any::<u8>(), 0..600),
        crc in any::<bool>(),
    ) {
        let mut a = if crc { MAGIC_CRC.to_vec() } else { MAGIC_NEWC.to_vec() };
        for f in &fields {
            a.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        a.extend(tail);
        let _ = slice_all(&a);
        let _ = stream_all(&a);
    }

    #[test]
    fn prop_mutated_archives_never_panic_and_readers_agree(
        list in proptest::collection::vec(arb_entry(), 1..6),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
        hexedits in proptest::collection::vec((any::<proptest::sample::Index>(), 0usize..16), 0..4),
        cut in any::<proptest::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut a = build(&list);
        for (i, b) in edits {
            let i = i.index(a.len());
            a[i] = b;
        }
        // Hex-digit edits keep headers parseable, so sizes and modes vary.
        for (i, d) in hexedits {
            let i = i.index(a.len());
            a[i] = b"0123456789ABCDEF"[d];
        }
        if do_cut {
            a.truncate(cut.index(a.len() + 1));
        }
        let s = slice_all(&a);
        let t = stream_all(&a);
        prop_assert_eq!(s, t);
    }
}
