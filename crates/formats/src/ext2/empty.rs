//! An empty ext2 file system (root directory only, 4 KiB blocks), given as
//! its non-zero blocks so it can be written into a sparse in-memory device:
//! what the runtime's /tmp is made from (a shared overlay over zeros).

use super::layout::{has_super, Geometry};
use super::structs::*;
use super::Ext2Error;

/// Block size of the file systems made here.
pub const BLOCK_SIZE: u64 = 4096;

/// Non-zero blocks of an image: (block number, 4096 bytes).
pub type Blocks = Vec<(u64, Vec<u8>)>;

/// The geometry and the non-zero blocks `(block number, 4096 bytes)` of an
/// empty ext2 file system of about `size` bytes whose root directory has
/// permission bits `root_perm`, times set to `now` (Unix seconds).
pub fn empty_fs(size: u64, root_perm: u16, now: u32) -> Result<(Geometry, Blocks), Ext2Error> {
    let bs = BLOCK_SIZE;
    // One inode per 16 KiB, like mke2fs's default ratio.
    let geo = Geometry::new(size.max(1 << 20), bs, (size / 16384).max(64))?;
    let ipg = geo.inodes_per_group;
    let bits = (bs * 8) as usize;
    let mut out = Vec::new();
    let root_block = geo.data_start(0);
    let mut descs = Vec::new();
    let (mut free_b_total, mut free_i_total) = (0u64, 0u64);
    for g in 0..geo.groups {
        let len = geo.group_len(g);
        // Group 0 also holds the root directory's block; inodes 1..=10
        // are reserved (2 is the root).
        let used = geo.overhead(g) + u64::from(g == 0);
        let used_i = if g == 0 { u64::from(FIRST_INO) - 1 } else { 0 };
        let mut bb = vec![0u8; bs as usize];
        set_bits(&mut bb, 0, used as usize);
        set_bits(&mut bb, len as usize, bits);
        out.push((geo.block_bitmap(g), bb));
        let mut ib = vec![0u8; bs as usize];
        set_bits(&mut ib, 0, used_i as usize);
        set_bits(&mut ib, ipg as usize, bits);
        out.push((geo.inode_bitmap(g), ib));
        free_b_total += len - used;
        free_i_total += ipg - used_i;
        descs.push(GroupDesc {
            block_bitmap: geo.block_bitmap(g) as u32,
            inode_bitmap: geo.inode_bitmap(g) as u32,
            inode_table: geo.inode_table(g) as u32,
            free_blocks_count: (len - used) as u16,
            free_inodes_count: (ipg - used_i) as u16,
            used_dirs_count: u16::from(g == 0),
            flags: 0,
        });
    }
    // The root inode (2) in the first inode table block.
    let mut table = vec![0u8; bs as usize];
    let mut root = Inode {
        mode: S_IFDIR | (root_perm & 0o7777),
        size: bs,
        atime: now,
        ctime: now,
        mtime: now,
        links_count: 2,
        blocks: (bs / 512) as u32,
        extra_isize: EXTRA_ISIZE,
        ..Inode::default()
    };
    root.block[0] = root_block as u32;
    let isz = usize::from(INODE_SIZE);
    root.write_to(&mut table[isz..2 * isz]);
    out.push((geo.inode_table(0), table));
    // The root directory: "." and ".." (both inode 2).
    let mut dir = vec![0u8; bs as usize];
    let dot = dir_rec_len(1);
    DirEntry {
        inode: ROOT_INO,
        rec_len: dot as u16,
        file_type: ft::DIR,
        name: b".",
    }
    .write_to(&mut dir[..dot]);
    DirEntry {
        inode: ROOT_INO,
        rec_len: (bs as usize - dot) as u16,
        file_type: ft::DIR,
        name: b"..",
    }
    .write_to(&mut dir[dot..]);
    out.push((root_block, dir));
    let mut gdt = vec![0u8; (geo.gdt_blocks * bs) as usize];
    for (i, d) in descs.iter().enumerate() {
        gdt[i * GROUP_DESC_SIZE..(i + 1) * GROUP_DESC_SIZE].copy_from_slice(&d.to_bytes());
    }
    let mut sb = Superblock {
        inodes_count: geo.inodes_count() as u32,
        blocks_count: geo.blocks_count as u32,
        free_blocks_count: free_b_total as u32,
        free_inodes_count: free_i_total as u32,
        first_data_block: geo.first_data_block as u32,
        log_block_size: (bs / 1024).trailing_zeros(),
        blocks_per_group: geo.blocks_per_group as u32,
        inodes_per_group: ipg as u32,
        wtime: now,
        max_mnt_count: 0xffff,
        state: STATE_VALID,
        errors: ERRORS_CONTINUE,
        lastcheck: now,
        rev_level: 1,
        first_ino: FIRST_INO,
        inode_size: INODE_SIZE,
        feature_incompat: FEATURE_INCOMPAT_FILETYPE,
        feature_ro_compat: FEATURE_RO_COMPAT_SPARSE_SUPER | FEATURE_RO_COMPAT_LARGE_FILE,
        def_hash_version: 1,
        mkfs_time: now,
        min_extra_isize: EXTRA_ISIZE,
        want_extra_isize: EXTRA_ISIZE,
        flags: FLAGS_SIGNED_HASH,
        ..Superblock::default()
    };
    for g in (0..geo.groups).filter(|&g| has_super(g)) {
        sb.block_group_nr = g as u16;
        let mut blk = vec![0u8; bs as usize];
        let at = if g == 0 { 1024 } else { 0 };
        blk[at..at + SUPERBLOCK_SIZE].copy_from_slice(&sb.to_bytes());
        blk.extend_from_slice(&gdt);
        for (i, chunk) in blk.chunks(bs as usize).enumerate() {
            out.push((geo.group_start(g) + i as u64, chunk.to_vec()));
        }
    }
    Ok((geo, out))
}

fn set_bits(map: &mut [u8], from: usize, to: usize) {
    for b in from..to.min(map.len() * 8) {
        map[b / 8] |= 1 << (b % 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_e2fsck() {
        let ok = std::process::Command::new("e2fsck").arg("-V").output();
        if !matches!(ok, Ok(ref o) if o.status.success()) {
            eprintln!("skipping: e2fsck not installed");
            return;
        }
        for size in [1u64 << 20, 64 << 20, 300 << 20] {
            let (geo, blocks) = empty_fs(size, 0o1777, 1_700_000_000).unwrap();
            let mut img = vec![0u8; geo.bytes() as usize];
            for (b, data) in blocks {
                let o = (b * BLOCK_SIZE) as usize;
                img[o..o + data.len()].copy_from_slice(&data);
            }
            let dir =
                std::env::temp_dir().join(format!("myst-empty-{}-{size}", std::process::id()));
            std::fs::write(&dir, &img).unwrap();
            let r = std::process::Command::new("e2fsck")
                .args(["-fn"])
                .arg(&dir)
                .output()
                .unwrap();
            let _ = std::fs::remove_file(&dir);
            let text = String::from_utf8_lossy(&r.stdout).into_owned();
            assert!(r.status.success(), "size {size}: {text}");
            assert!(!text.contains("lost+found"), "{text}");
        }
    }
}
