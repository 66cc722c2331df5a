//! Model-based property test of the ext2 driver: random operation
//! sequences run on the driver (over an in-memory device holding a stock
//! mke2fs image) and on a simple in-memory model, compared after every
//! step; at the end the image must pass `e2fsck -fn` and `debugfs rdump`
//! must produce the model's tree.

mod common;
use common::*;
use myst_fs::{Errno, FileSystem, FileType, Ino, NewInode, SetAttr, Timespec};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Body {
    File(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, usize>),
    Link(Vec<u8>),
    Special(FileType, u64),
}

#[derive(Clone, Debug)]
struct MNode {
    body: Body,
    perm: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    atime: Timespec,
    mtime: Option<Timespec>,
    ino: Ino,
    parent: usize,
}

struct Model {
    nodes: Vec<Option<MNode>>,
}

const ROOT: usize = 0;

impl Model {
    fn node(&self, id: usize) -> &MNode {
        self.nodes[id].as_ref().unwrap()
    }
    fn node_mut(&mut self, id: usize) -> &mut MNode {
        self.nodes[id].as_mut().unwrap()
    }
    fn entries(&self, id: usize) -> &BTreeMap<Vec<u8>, usize> {
        match &self.node(id).body {
            Body::Dir(e) => e,
            _ => panic!("not a dir"),
        }
    }
    fn entries_mut(&mut self, id: usize) -> &mut BTreeMap<Vec<u8>, usize> {
        match &mut self.node_mut(id).body {
            Body::Dir(e) => e,
            _ => panic!("not a dir"),
        }
    }
    fn is_dir(&self, id: usize) -> bool {
        matches!(self.node(id).body, Body::Dir(_))
    }
    /// All live nodes in path order (first occurrence), with dirs marked.
    fn walk(&self) -> Vec<usize> {
        let mut out = vec![ROOT];
        let mut i = 0;
        while i < out.len() {
            let id = out[i];
            if self.is_dir(id) {
                for &c in self.entries(id).values() {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
            i += 1;
        }
        out
    }
    fn dirs(&self) -> Vec<usize> {
        self.walk()
            .into_iter()
            .filter(|&i| self.is_dir(i))
            .collect()
    }
    fn files(&self) -> Vec<usize> {
        self.walk()
            .into_iter()
            .filter(|&i| matches!(self.node(i).body, Body::File(_)))
            .collect()
    }
    fn dir_nlink(&self, id: usize) -> u32 {
        2 + self
            .entries(id)
            .values()
            .filter(|&&c| self.is_dir(c))
            .count() as u32
    }
    fn is_descendant(&self, mut d: usize, anc: usize) -> bool {
        loop {
            if d == anc {
                return true;
            }
            if d == ROOT {
                return false;
            }
            d = self.node(d).parent;
        }
    }
    fn drop_node(&mut self, id: usize) {
        let n = self.node_mut(id);
        n.nlink -= 1;
        if n.nlink == 0 {
            self.nodes[id] = None;
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: usize,
        name: usize,
        kind: u8,
        perm: u32,
        rdev: u64,
    },
    Symlink {
        dir: usize,
        name: usize,
        len: usize,
    },
    Write {
        file: usize,
        off: u32,
        len: u32,
        seed: u8,
    },
    Truncate {
        file: usize,
        size: u32,
    },
    Unlink {
        dir: usize,
        name: usize,
    },
    Rmdir {
        dir: usize,
        name: usize,
    },
    Rename {
        sdir: usize,
        sname: usize,
        ddir: usize,
        dname: usize,
    },
    Link {
        file: usize,
        dir: usize,
        name: usize,
    },
    Chmod {
        node: usize,
        perm: u32,
    },
    Chown {
        node: usize,
        uid: u32,
        gid: u32,
    },
    Utimes {
        node: usize,
        atime: i64,
        mtime: i64,
        nsec: u32,
    },
}

fn pool_name(i: usize) -> Vec<u8> {
    match i % 12 {
        k @ 0..=7 => vec![b'a' + k as u8],
        k => {
            let mut v = vec![b'L'; 240];
            v.push(b'0' + k as u8);
            v
        }
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let idx = || 0usize..64;
    prop_oneof![
        4 => (idx(), idx(), 0u8..12, 0u32..0o10000, any::<u64>()).prop_map(|(dir, name, kind, perm, rdev)| Op::Create { dir, name, kind, perm, rdev }),
        1 => (idx(), idx(), 1usize..300).prop_map(|(dir, name, len)| Op::Symlink { dir, name, len }),
        5 => (idx(), prop_oneof![0u32..5000, 0u32..300_000, 260_000u32..620_000], 0u32..20_000, any::<u8>())
            .prop_map(|(file, off, len, seed)| Op::Write { file, off, len, seed }),
        2 => (idx(), prop_oneof![0u32..5000, 0u32..620_000]).prop_map(|(file, size)| Op::Truncate { file, size }),
        2 => (idx(), idx()).prop_map(|(dir, name)| Op::Unlink { dir, name }),
        2 => (idx(), idx()).prop_map(|(dir, name)| Op::Rmdir { dir, name }),
        3 => (idx(), idx(), idx(), idx()).prop_map(|(sdir, sname, ddir, dname)| Op::Rename { sdir, sname, ddir, dname }),
        1 => (idx(), idx(), idx()).prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
        1 => (idx(), 0u32..0o10000).prop_map(|(node, perm)| Op::Chmod { node, perm }),
        1 => (idx(), any::<u32>(), 0u32..70_000).prop_map(|(node, uid, gid)| Op::Chown { node, uid, gid }),
        1 => (idx(), -2_000_000_000i64..4_000_000_000, -1_000_000_000i64..2_000_000_000, 0u32..1_000_000_000)
            .prop_map(|(node, atime, mtime, nsec)| Op::Utimes { node, atime, mtime, nsec }),
    ]
}

type R = Result<(), i32>;

fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xfffff000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffffff00) << 12) | (mi & 0xff)
}

fn code(r: Result<impl Sized, Errno>) -> R {
    r.map(|_| ()).map_err(|e| e.code)
}

struct Harness<'a> {
    fs: &'a dyn FileSystem,
    m: Model,
    step: i64,
    big_inodes: bool,
}

impl Harness<'_> {
    /// A name in `dir`: mostly an existing entry, sometimes one from the pool.
    fn src_name(&self, dir: usize, i: usize) -> Vec<u8> {
        let e: Vec<&Vec<u8>> = self.m.entries(dir).keys().collect();
        if e.is_empty() || i % 8 == 7 {
            pool_name(i)
        } else {
            e[i % e.len()].clone()
        }
    }

    fn apply(&mut self, op: &Op) {
        self.step += 1;
        let t0 = Timespec {
            sec: 1_600_000_000 + self.step,
            nsec: 0,
        };
        let dirs = self.m.dirs();
        let files = self.m.files();
        let all = self.m.walk();
        let pick = |v: &Vec<usize>, i: usize| v[i % v.len()];
        let fs = self.fs;
        if !matches!(op, Op::Utimes { .. } | Op::Chmod { .. } | Op::Chown { .. }) {
            // Entry changes set directory mtimes to "now"; not modelled.
            for &d in &dirs {
                self.m.node_mut(d).mtime = None;
            }
        }
        let (got, want): (R, R) = match *op {
            Op::Create {
                dir,
                name,
                kind,
                perm,
                rdev,
            } => {
                let d = pick(&dirs, dir);
                let name = pool_name(name);
                let kind = match kind {
                    0..=4 => FileType::Regular,
                    5..=7 => FileType::Directory,
                    8 => FileType::Fifo,
                    9 => FileType::Socket,
                    10 => FileType::CharDev,
                    _ => FileType::BlockDev,
                };
                let is_dev = matches!(kind, FileType::CharDev | FileType::BlockDev);
                // Mostly valid 12-bit major / 20-bit minor numbers, sometimes not.
                let (major, minor) = ((rdev >> 44) as u32, rdev as u32);
                let valid = rdev % 8 != 0;
                let (major, minor) = if valid {
                    (major % 4096, minor % (1 << 20))
                } else {
                    (major | 4096, minor)
                };
                let rdev = if is_dev { makedev(major, minor) } else { 0 };
                let new = NewInode {
                    kind,
                    perm,
                    uid: 1000,
                    gid: 100,
                    rdev,
                    time: t0,
                };
                let got = fs.create(self.m.node(d).ino, &name, &new);
                let want = if is_dev && !valid {
                    Err(Errno::EINVAL.code)
                } else if self.m.entries(d).contains_key(&name) {
                    Err(Errno::EEXIST.code)
                } else {
                    Ok(())
                };
                if let (Ok(ino), Ok(())) = (&got, &want) {
                    let body = match kind {
                        FileType::Regular => Body::File(Vec::new()),
                        FileType::Directory => Body::Dir(BTreeMap::new()),
                        k => Body::Special(k, rdev),
                    };
                    let id = self.m.nodes.len();
                    self.m.nodes.push(Some(MNode {
                        body,
                        perm,
                        uid: 1000,
                        gid: 100,
                        nlink: 1,
                        atime: t0,
                        mtime: Some(t0),
                        ino: *ino,
                        parent: d,
                    }));
                    self.m.entries_mut(d).insert(name, id);
                    self.m.node_mut(d).mtime = None;
                }
                (code(got), want)
            }
            Op::Symlink { dir, name, len } => {
                let d = pick(&dirs, dir);
                let name = pool_name(name);
                let target: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                let new = NewInode {
                    kind: FileType::Symlink,
                    perm: 0o777,
                    uid: 7,
                    gid: 8,
                    rdev: 0,
                    time: t0,
                };
                let got = fs.symlink(self.m.node(d).ino, &name, &target, &new);
                let want = if self.m.entries(d).contains_key(&name) {
                    Err(Errno::EEXIST.code)
                } else {
                    Ok(())
                };
                if let (Ok(ino), Ok(())) = (&got, &want) {
                    let id = self.m.nodes.len();
                    self.m.nodes.push(Some(MNode {
                        body: Body::Link(target),
                        perm: 0o777,
                        uid: 7,
                        gid: 8,
                        nlink: 1,
                        atime: t0,
                        mtime: Some(t0),
                        ino: *ino,
                        parent: d,
                    }));
                    self.m.entries_mut(d).insert(name, id);
                }
                (code(got), want)
            }
            Op::Write {
                file,
                off,
                len,
                seed,
            } => {
                if files.is_empty() {
                    return;
                }
                let f = pick(&files, file);
                let data: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed))
                    .collect();
                let got = fs.write(self.m.node(f).ino, u64::from(off), &data);
                if let Ok(n) = &got {
                    assert_eq!(*n, data.len(), "short write");
                }
                let n = self.m.node_mut(f);
                if let Body::File(c) = &mut n.body {
                    let end = off as usize + data.len();
                    // An empty write changes nothing, even past the end.
                    if !data.is_empty() {
                        if c.len() < end {
                            c.resize(end, 0);
                        }
                        c[off as usize..end].copy_from_slice(&data);
                    }
                }
                if !data.is_empty() {
                    n.mtime = None;
                }
                (code(got), Ok(()))
            }
            Op::Truncate { file, size } => {
                if files.is_empty() {
                    return;
                }
                let f = pick(&files, file);
                let got = fs.setattr(
                    self.m.node(f).ino,
                    &SetAttr {
                        size: Some(u64::from(size)),
                        ..Default::default()
                    },
                );
                let n = self.m.node_mut(f);
                if let Body::File(c) = &mut n.body {
                    if c.len() != size as usize {
                        n.mtime = None;
                    }
                    c.resize(size as usize, 0);
                }
                (code(got), Ok(()))
            }
            Op::Unlink { dir, name } => {
                let d = pick(&dirs, dir);
                let name = self.src_name(d, name);
                let got = fs.unlink(self.m.node(d).ino, &name);
                let want = match self.m.entries(d).get(&name).copied() {
                    None => Err(Errno::ENOENT.code),
                    Some(c) if self.m.is_dir(c) => Err(Errno::EISDIR.code),
                    Some(c) => {
                        self.m.entries_mut(d).remove(&name);
                        self.m.drop_node(c);
                        Ok(())
                    }
                };
                (code(got), want)
            }
            Op::Rmdir { dir, name } => {
                let d = pick(&dirs, dir);
                let name = self.src_name(d, name);
                let got = fs.rmdir(self.m.node(d).ino, &name);
                let want = match self.m.entries(d).get(&name).copied() {
                    None => Err(Errno::ENOENT.code),
                    Some(c) if !self.m.is_dir(c) => Err(Errno::ENOTDIR.code),
                    Some(c) if !self.m.entries(c).is_empty() => Err(Errno::ENOTEMPTY.code),
                    Some(c) => {
                        self.m.entries_mut(d).remove(&name);
                        self.m.nodes[c] = None;
                        Ok(())
                    }
                };
                (code(got), want)
            }
            Op::Rename {
                sdir,
                sname,
                ddir,
                dname,
            } => {
                let sd = pick(&dirs, sdir);
                let dd = pick(&dirs, ddir);
                let sn = self.src_name(sd, sname);
                let dn = if dname % 3 == 0 {
                    self.src_name(dd, dname / 3)
                } else {
                    pool_name(dname)
                };
                let got = fs.rename(self.m.node(sd).ino, &sn, self.m.node(dd).ino, &dn);
                let want = self.model_rename(sd, &sn, dd, &dn);
                (code(got), want)
            }
            Op::Link { file, dir, name } => {
                if files.is_empty() {
                    return;
                }
                let f = pick(&files, file);
                let d = pick(&dirs, dir);
                let name = pool_name(name);
                let got = fs.link(self.m.node(f).ino, self.m.node(d).ino, &name);
                let want = if self.m.entries(d).contains_key(&name) {
                    Err(Errno::EEXIST.code)
                } else {
                    self.m.entries_mut(d).insert(name, f);
                    self.m.node_mut(f).nlink += 1;
                    Ok(())
                };
                (code(got), want)
            }
            Op::Chmod { node, perm } => {
                let n = pick(&all, node);
                let got = fs.setattr(
                    self.m.node(n).ino,
                    &SetAttr {
                        perm: Some(perm),
                        ..Default::default()
                    },
                );
                self.m.node_mut(n).perm = perm;
                (code(got), Ok(()))
            }
            Op::Chown { node, uid, gid } => {
                let n = pick(&all, node);
                let got = fs.setattr(
                    self.m.node(n).ino,
                    &SetAttr {
                        uid: Some(uid),
                        gid: Some(gid),
                        ..Default::default()
                    },
                );
                let mn = self.m.node_mut(n);
                mn.uid = uid;
                mn.gid = gid;
                (code(got), Ok(()))
            }
            Op::Utimes {
                node,
                atime,
                mtime,
                nsec,
            } => {
                let n = pick(&all, node);
                // 128-byte inodes hold 32-bit seconds and no nanoseconds.
                let (atime, mtime, nsec) = if self.big_inodes {
                    (atime, mtime, nsec)
                } else {
                    (atime.clamp(i32::MIN.into(), i32::MAX.into()), mtime, 0)
                };
                let a = Timespec { sec: atime, nsec };
                let mt = Timespec {
                    sec: mtime,
                    nsec: nsec / 2,
                };
                let got = fs.setattr(
                    self.m.node(n).ino,
                    &SetAttr {
                        atime: Some(a),
                        mtime: Some(mt),
                        ..Default::default()
                    },
                );
                let mn = self.m.node_mut(n);
                mn.atime = a;
                mn.mtime = Some(mt);
                (code(got), Ok(()))
            }
        };
        assert_eq!(got, want, "{op:?}");
    }

    fn model_rename(&mut self, sd: usize, sn: &[u8], dd: usize, dn: &[u8]) -> R {
        let m = &mut self.m;
        let Some(src) = m.entries(sd).get(sn).copied() else {
            return Err(Errno::ENOENT.code);
        };
        if sd == dd && sn == dn {
            return Ok(());
        }
        let src_dir = m.is_dir(src);
        if src_dir && m.is_descendant(dd, src) {
            return Err(Errno::EINVAL.code);
        }
        if let Some(dst) = m.entries(dd).get(dn).copied() {
            if dst == src {
                return Ok(());
            }
            let dst_dir = m.is_dir(dst);
            if src_dir && !dst_dir {
                return Err(Errno::ENOTDIR.code);
            }
            if !src_dir && dst_dir {
                return Err(Errno::EISDIR.code);
            }
            if dst_dir && !m.entries(dst).is_empty() {
                return Err(Errno::ENOTEMPTY.code);
            }
            if dst_dir {
                m.nodes[dst] = None;
            } else {
                m.drop_node(dst);
            }
        }
        m.entries_mut(sd).remove(sn);
        m.entries_mut(dd).insert(dn.to_vec(), src);
        if src_dir {
            m.node_mut(src).parent = dd;
        }
        Ok(())
    }

    /// Compares the whole driver tree with the model.
    fn compare(&self) {
        let fs = self.fs;
        for id in self.m.walk() {
            let n = self.m.node(id);
            let a = fs.getattr(n.ino).unwrap();
            assert_eq!(
                (a.perm, a.uid, a.gid),
                (n.perm & 0o7777, n.uid, n.gid),
                "attrs of model node {id}"
            );
            assert_eq!(a.atime, n.atime, "atime of {id}");
            if let Some(m) = n.mtime {
                assert_eq!(a.mtime, m, "mtime of {id}");
            }
            match &n.body {
                Body::File(c) => {
                    assert_eq!(a.kind, FileType::Regular);
                    assert_eq!(a.nlink, n.nlink);
                    assert_eq!(a.size, c.len() as u64, "size of {id}");
                    let mut buf = vec![0xeeu8; c.len() + 10];
                    let got = fs.read(n.ino, 0, &mut buf).unwrap();
                    assert_eq!(got, c.len());
                    assert!(buf[..got] == c[..], "contents of model node {id}");
                }
                Body::Link(t) => {
                    assert_eq!(a.kind, FileType::Symlink);
                    assert_eq!(&fs.readlink(n.ino).unwrap(), t);
                    assert_eq!(a.size, t.len() as u64);
                }
                Body::Special(k, rdev) => {
                    assert_eq!((a.kind, a.rdev, a.nlink), (*k, *rdev, n.nlink));
                }
                Body::Dir(entries) => {
                    assert_eq!(a.kind, FileType::Directory);
                    assert_eq!(a.nlink, self.m.dir_nlink(id), "nlink of dir {id}");
                    let got = fs.readdir(n.ino).unwrap();
                    let mut seen = BTreeMap::new();
                    for e in got {
                        match &e.name[..] {
                            b"." => assert_eq!(e.ino, n.ino),
                            b".." => assert_eq!(e.ino, self.m.node(n.parent).ino, "`..` of {id}"),
                            _ => {
                                assert!(
                                    seen.insert(e.name.clone(), (e.ino, e.kind)).is_none(),
                                    "duplicate entry"
                                );
                            }
                        }
                    }
                    let want: BTreeMap<Vec<u8>, (Ino, FileType)> = entries
                        .iter()
                        .map(|(k, &c)| {
                            let cn = self.m.node(c);
                            let kind = match &cn.body {
                                Body::File(_) => FileType::Regular,
                                Body::Dir(_) => FileType::Directory,
                                Body::Link(_) => FileType::Symlink,
                                Body::Special(k, _) => *k,
                            };
                            (k.clone(), (cn.ino, kind))
                        })
                        .collect();
                    assert_eq!(seen, want, "entries of dir {id}");
                    for (name, (ino, _)) in &want {
                        assert_eq!(fs.lookup(n.ino, name).unwrap(), *ino);
                    }
                }
            }
        }
    }

    /// The model as a host-style tree (files, dirs, symlinks) for rdump.
    fn host_view(&self) -> BTreeMap<String, Node> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((d, path)) = stack.pop() {
            for (name, &c) in self.m.entries(d) {
                if path.is_empty() && name == b"lost+found" {
                    continue;
                }
                let p = format!("{path}/{}", String::from_utf8_lossy(name));
                let n = self.m.node(c);
                let node = match &n.body {
                    Body::File(data) => Node::File(data.clone(), n.perm & 0o7777),
                    Body::Dir(_) => {
                        stack.push((c, p.clone()));
                        Node::Dir(n.perm & 0o7777)
                    }
                    Body::Link(t) => Node::Link(t.clone()),
                    Body::Special(..) => continue,
                };
                out.insert(p, node);
            }
        }
        out
    }
}

fn initial_model(fs: &dyn FileSystem) -> Model {
    let mut nodes = Vec::new();
    let root = fs.getattr(fs.root()).unwrap();
    let lf = fs.lookup(fs.root(), b"lost+found").unwrap();
    let lfa = fs.getattr(lf).unwrap();
    let mut entries = BTreeMap::new();
    entries.insert(b"lost+found".to_vec(), 1);
    nodes.push(Some(MNode {
        body: Body::Dir(entries),
        perm: root.perm,
        uid: root.uid,
        gid: root.gid,
        nlink: 3,
        atime: root.atime,
        mtime: None,
        ino: root.ino,
        parent: ROOT,
    }));
    nodes.push(Some(MNode {
        body: Body::Dir(BTreeMap::new()),
        perm: lfa.perm,
        uid: lfa.uid,
        gid: lfa.gid,
        nlink: 2,
        atime: lfa.atime,
        mtime: None,
        ino: lf,
        parent: ROOT,
    }));
    Model { nodes }
}

fn run_case(base: &[u8], dev_bs: usize, big_inodes: bool, ops: &[Op]) {
    let (dev, fs) = mount_mem(base.to_vec(), dev_bs);
    let mut h = Harness {
        fs: &fs,
        m: initial_model(&fs),
        step: 0,
        big_inodes,
    };
    for op in ops {
        h.apply(op);
        h.compare();
    }
    // Independent oracles: e2fsck and debugfs rdump on the written image.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    std::fs::write(&img, dev.to_vec()).unwrap();
    let out = output(std::process::Command::new("e2fsck").arg("-fn").arg(&img));
    let report = String::from_utf8_lossy(&out.stdout);
    // With -n, e2fsck answers "no" to every fix, and some problems (wrong
    // free counts) do not change its exit status: any question is a failure.
    assert!(
        out.status.success() && !report.contains("? no"),
        "e2fsck -fn failed after {ops:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = dir.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    run(std::process::Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", dump.display()))
        .arg(&img));
    // rdump restores only the 0o777 permission bits.
    let low = |t: BTreeMap<String, Node>| -> BTreeMap<String, Node> {
        t.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Node::File(d, p) => Node::File(d, p & 0o777),
                    Node::Dir(p) => Node::Dir(p & 0o777),
                    v => v,
                };
                (k, v)
            })
            .collect()
    };
    assert_eq!(
        low(walk_host(&dump)),
        low(h.host_view()),
        "debugfs rdump differs from the model"
    );
}

fn base_image(bs: u32, isz: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    mke2fs(&img, 12 * 1024, bs, isz, None, &["-N", "512"]);
    std::fs::read(&img).unwrap()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 20,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn model_1k_blocks_128_inodes(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        if !have("e2fsck") { return Ok(()); }
        thread_local!(static BASE: Vec<u8> = base_image(1024, 128));
        BASE.with(|b| run_case(b, 4096, false, &ops));
    }

    #[test]
    fn model_4k_blocks_256_inodes(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        if !have("e2fsck") { return Ok(()); }
        thread_local!(static BASE: Vec<u8> = base_image(4096, 256));
        BASE.with(|b| run_case(b, 4096, true, &ops));
    }

    #[test]
    fn model_2k_blocks_256_inodes_1k_device(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        if !have("e2fsck") { return Ok(()); }
        thread_local!(static BASE: Vec<u8> = base_image(2048, 256));
        BASE.with(|b| run_case(b, 1024, true, &ops));
    }
}
