//! Our batched XTS against the `xts-mode` crate (the reference) on random
//! keys, sector numbers and lengths.

use aes08::cipher::generic_array::GenericArray;
use aes08::cipher::KeyInit;
use aes08::Aes256;
use myst_formats::xts::{Xts, SECTOR_SIZE};
use proptest::prelude::*;
use xts_mode::{get_tweak_default, Xts128};

fn reference(key: &[u8; 64]) -> Xts128<Aes256> {
    Xts128::new(
        Aes256::new(GenericArray::from_slice(&key[..32])),
        Aes256::new(GenericArray::from_slice(&key[32..])),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn matches_xts_mode(
        key in prop::array::uniform32(any::<u8>()).prop_flat_map(|a| {
            prop::array::uniform32(any::<u8>()).prop_map(move |b| {
                let mut k = [0u8; 64];
                k[..32].copy_from_slice(&a);
                k[32..].copy_from_slice(&b);
                k
            })
        }),
        sectors in 0usize..40,
        first in prop_oneof![0u64..1000, any::<u64>().prop_map(|s| s >> 1), Just(u64::MAX - 64)],
        seed in any::<u64>(),
    ) {
        let mut plain = vec![0u8; sectors * SECTOR_SIZE];
        let mut s = seed | 1;
        for b in plain.iter_mut() {
            // xorshift: cheap varied plaintext.
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            *b = s as u8;
        }
        let ours = Xts::new(&key);
        let theirs = reference(&key);

        let mut a = plain.clone();
        ours.encrypt_sectors(&mut a, first).unwrap();
        let mut b = plain.clone();
        theirs.encrypt_area(&mut b, SECTOR_SIZE, u128::from(first), get_tweak_default);
        prop_assert_eq!(&a, &b);

        // Decryption both ways: ours undoes theirs and vice versa.
        ours.decrypt_sectors(&mut b, first).unwrap();
        prop_assert_eq!(&b, &plain);
        theirs.decrypt_area(&mut a, SECTOR_SIZE, u128::from(first), get_tweak_default);
        prop_assert_eq!(&a, &plain);
    }

    /// Splitting a request anywhere on a sector boundary changes nothing.
    #[test]
    fn split_requests_agree(sectors in 1usize..48, cut in 0usize..48, first in 0u64..1u64 << 40) {
        let cut = cut % (sectors + 1);
        let key: [u8; 64] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5a);
        let plain: Vec<u8> = (0..sectors * SECTOR_SIZE).map(|i| (i * 7 + 3) as u8).collect();
        let x = Xts::new(&key);
        let mut whole = plain.clone();
        x.encrypt_sectors(&mut whole, first).unwrap();
        let mut parts = plain.clone();
        let (l, r) = parts.split_at_mut(cut * SECTOR_SIZE);
        x.encrypt_sectors(l, first).unwrap();
        x.encrypt_sectors(r, first + cut as u64).unwrap();
        prop_assert_eq!(whole, parts);
    }
}
