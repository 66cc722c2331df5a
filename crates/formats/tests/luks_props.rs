//! The LUKS1 parser on arbitrary and mutated headers: errors, never a
//! panic, and whatever it accepts is internally consistent.

use std::sync::OnceLock;

use myst_formats::luks::{
    Header, LuksParams, LuksWriter, KEY_MATERIAL_SECTORS, MIN_ITERATIONS, PADDED_HEADER_SIZE,
};
use proptest::prelude::*;

const PASS: &str = "a long enough passphrase";

/// A valid image prefix (header + key slots) with an active slot 0, built
/// once with cheap iteration counts.
fn valid() -> &'static [u8] {
    static IMG: OnceLock<Vec<u8>> = OnceLock::new();
    IMG.get_or_init(|| {
        let key: [u8; 64] = core::array::from_fn(|i| (i as u8) ^ 0x3c);
        let params = LuksParams {
            passphrase: Some(PASS),
            slot_iterations: MIN_ITERATIONS,
            ..LuksParams::default()
        };
        LuksWriter::new(&key, &params).expect("valid params").header
    })
}

/// Checks what an accepted header promises.
fn check_accepted(h: &Header, file_size: u64) {
    let payload = h.payload_offset_bytes();
    assert!(payload > 0 && payload <= file_size);
    let mut ranges: Vec<_> = h.key_slots.iter().map(|s| s.key_material_range()).collect();
    ranges.sort_by_key(|r| r.start);
    for r in &ranges {
        assert!(r.start >= PADDED_HEADER_SIZE as u64 && r.end <= payload);
        assert_eq!(r.end - r.start, u64::from(KEY_MATERIAL_SECTORS) * 512);
    }
    for w in ranges.windows(2) {
        assert!(w[0].end <= w[1].start);
    }
    // What we accept, we write back identically.
    let again = Header::parse(&h.to_bytes(), file_size).expect("re-parse");
    assert_eq!(&again, h);
}

/// Offsets of the u32 fields: payload offset, key bytes, digest iterations,
/// then state/iterations/offset/stripes of each slot.
fn u32_fields() -> Vec<usize> {
    let mut v = vec![104, 108, 164];
    for i in 0..8 {
        let o = 208 + 48 * i;
        v.extend([o, o + 4, o + 40, o + 44]);
    }
    v
}

fn interesting_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(8),
        Just(500),
        Just(3536),
        Just(4000),
        Just(4096),
        Just(0x00AC_71F3),
        Just(0x0000_DEAD),
        Just(u32::MAX),
        Just(u32::MAX - 499),
        any::<u32>(),
    ]
}

fn file_size() -> impl Strategy<Value = u64> {
    let n = valid().len() as u64;
    prop_oneof![
        Just(n),
        Just(n - 1),
        Just(0u64),
        Just(1024),
        Just(u64::MAX),
        any::<u64>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..1100),
        size in any::<u64>(),
        magic in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 8 {
            // Get past the magic and version checks more often.
            bytes[..8].copy_from_slice(b"LUKS\xba\xbe\x00\x01");
        }
        if let Ok(h) = Header::parse(&bytes, size) {
            check_accepted(&h, size);
        }
    }

    #[test]
    fn mutated_bytes_never_panic(
        muts in prop::collection::vec((0usize..PADDED_HEADER_SIZE, any::<u8>()), 1..6),
        size in file_size(),
    ) {
        let mut b = valid()[..PADDED_HEADER_SIZE].to_vec();
        for (i, v) in muts {
            b[i] = v;
        }
        if let Ok(h) = Header::parse(&b, size) {
            check_accepted(&h, size);
        }
    }

    #[test]
    fn mutated_fields_never_panic(
        muts in prop::collection::vec((prop::sample::select(u32_fields()), interesting_u32()), 1..5),
        size in file_size(),
    ) {
        let mut img = valid().to_vec();
        for (off, v) in muts {
            img[off..off + 4].copy_from_slice(&v.to_be_bytes());
        }
        if let Ok(h) = Header::parse(&img, size) {
            check_accepted(&h, size);
            // Opening runs PBKDF2 with the header's counts: only when cheap.
            let cheap = h.mk_digest_iterations <= 2 * MIN_ITERATIONS
                && h.key_slots.iter().all(|s| !s.active || s.iterations <= 2 * MIN_ITERATIONS);
            if cheap {
                let r = h.open_with_passphrase(&img, PASS.as_bytes());
                // Moving slot 0's material or changing the digest breaks
                // the passphrase; everything else still opens.
                if let Ok(k) = r {
                    prop_assert!(h.check_key(&k).is_ok());
                }
            }
        }
    }
}
