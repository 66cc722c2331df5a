//! `myst mkext2` / `myst mkcpio` from container images (oci:,
//! oci-archive:, docker-archive:) checked against independent unpackers:
//! GNU tar plus a few lines of Python applying whiteouts
//! (tests/oci_util/expected.py) for images written by Python's tarfile
//! (tests/oci_util/mkimage.py), and `umoci unpack` for images built with
//! `umoci insert`, converted to a docker archive with `skopeo copy`. The
//! ext2 image is read back with `myst extract` (and e2fsck must find it
//! clean), the CPIO archive with bsdtar.

mod ext2_util;

use ext2_util::*;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn util(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oci_util")
        .join(name)
}

/// Writes the image `spec` describes at `out` (format from the spec).
fn mkimage(spec: &Value, out: &Path) {
    let s = out.with_extension("spec.json");
    fs::write(&s, serde_json::to_vec(spec).unwrap()).unwrap();
    ok(Command::new("python3")
        .arg(util("mkimage.py"))
        .arg(&s)
        .arg(out));
}

fn with_format(spec: &Value, fmt: &str) -> Value {
    let mut s = spec.clone();
    s["format"] = json!(fmt);
    s
}

/// GNU tar + whiteouts over an OCI layout directory.
fn expected(layout: &Path, out: &Path) {
    ok(Command::new("python3")
        .arg(util("expected.py"))
        .arg(layout)
        .arg(out));
}

/// `myst extract` of an image, with e2fsck run on its ext2 part first;
/// lost+found (which ext2 adds) is removed.
fn extract(img: &Path, out: &Path) {
    let ext = img.with_extension("ext2");
    ext2_part(img, &ext);
    e2fsck_clean(&ext);
    ok(myst().arg("extract").arg(img).arg(out));
    let lf = out.join("lost+found");
    if lf.is_dir() && fs::read_dir(&lf).unwrap().next().is_none() {
        fs::remove_dir(&lf).unwrap();
    }
}

/// A manifest with directory times left out: unpacking with tar (or
/// applying a whiteout) touches directories that a layer does not list,
/// which changes their times on the host but not in the image.
fn tree(root: &Path) -> Manifest {
    let mut m = manifest(root);
    for e in m.entries.values_mut() {
        if e.mode & 0o170000 == 0o040000 {
            e.mtime = 0;
        }
    }
    m
}

/// Without devices, FIFOs and hard-link structure (a CPIO image stores
/// hard links as copies and skips special files).
fn cpio_view(mut m: Manifest) -> Manifest {
    m.entries.retain(|_, e| {
        let t = e.mode & 0o170000;
        t != 0o020000 && t != 0o060000 && t != 0o010000
    });
    for e in m.entries.values_mut() {
        if e.mode & 0o170000 != 0o040000 {
            e.nlink = 1;
        }
    }
    m.links.clear();
    m
}

fn assert_same(what: &str, got: &Manifest, want: &Manifest) {
    if got == want {
        return;
    }
    let mut diff = String::new();
    for (p, e) in &want.entries {
        match got.entries.get(p) {
            None => diff += &format!("missing {}: {e:?}\n", p.display()),
            Some(g) if g != e => diff += &format!("{}:\n  got  {g:?}\n  want {e:?}\n", p.display()),
            _ => {}
        }
    }
    for (p, e) in &got.entries {
        if !want.entries.contains_key(p) {
            diff += &format!("extra {}: {e:?}\n", p.display());
        }
    }
    if got.links != want.links {
        diff += &format!("links: got {:?}, want {:?}\n", got.links, want.links);
    }
    panic!("{what}: trees differ:\n{diff}");
}

fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure, got success; stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(1));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn f(path: &str, data: &str) -> Value {
    json!({"path": path, "data": data})
}

/// Four layers (gzip, zstd, plain tar, gzip) exercising the layer rules.
fn layered_spec() -> Value {
    json!({
      "ref": "v1",
      "config": {"Entrypoint": ["sh", "-c"], "Cmd": ["echo hi"],
                 "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
                 "WorkingDir": "/srv"},
      "layers": [
        {"compression": "gzip", "entries": [
          {"path": "bin", "type": "dir"},
          {"path": "bin/sh", "data": "#!shell\n", "mode": 0o755},
          {"path": "bin/suid", "data": "s", "mode": 0o4755, "uid": 0, "gid": 0},
          {"path": "etc", "type": "dir", "mode": 0o755, "mtime": 1500000000},
          {"path": "etc/passwd", "data": "root:x:0:0::/root:/bin/sh\n"},
          {"path": "etc/owned", "data": "o", "mode": 0o640, "uid": 1000, "gid": 2000, "mtime": 1234567890},
          {"path": "etc/gone", "data": "deleted later"},
          {"path": "etc/hard1", "data": "shared inode\n"},
          {"path": "etc/hard2", "type": "link", "link": "etc/hard1"},
          {"path": "etc/rel", "type": "symlink", "link": "passwd"},
          {"path": "etc/abs", "type": "symlink", "link": "/etc/passwd"},
          {"path": "dev", "type": "dir"},
          {"path": "dev/null", "type": "chr", "major": 1, "minor": 3, "mode": 0o666},
          {"path": "dev/loop0", "type": "blk", "major": 7, "minor": 0, "mode": 0o660},
          {"path": "dev/fifo", "type": "fifo", "mode": 0o600},
          {"path": "opq", "type": "dir"},
          {"path": "opq/old1", "data": "1"},
          {"path": "opq/sub", "type": "dir"},
          {"path": "opq/sub/old2", "data": "2"},
          {"path": "deldir", "type": "dir"},
          {"path": "deldir/x", "data": "x"},
          {"path": "srv", "type": "dir", "mode": 0o700},
          {"path": "big", "size": 3000000}
        ]},
        {"compression": "zstd", "entries": [
          {"path": "etc", "type": "dir", "mode": 0o751, "mtime": 1500000001},
          {"path": "etc/.wh.gone"},
          {"path": "etc/passwd", "data": "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"},
          {"path": "etc/hard3", "type": "link", "link": "etc/hard1"},
          {"path": "opq", "type": "dir"},
          {"path": "opq/new", "data": "new in layer 2"},
          {"path": "opq/.wh..wh..opq"},
          {"path": ".wh.deldir"},
          {"path": "usr/bin/tool", "data": "tool", "mode": 0o755},
          {"path": "zlayer", "size": 200000}
        ]},
        {"compression": "none", "entries": [
          {"path": "etc/rel", "data": "a file where a symlink was"},
          {"path": "bin/suid", "type": "symlink", "link": "sh"},
          {"path": "etc/hard1", "data": "replaced: hard2 and hard3 keep the old inode\n"},
          {"path": "deldir", "type": "dir"},
          {"path": "deldir/y", "data": "a new deldir"},
          {"path": "srv/app", "data": "app"}
        ]},
        {"compression": "gzip", "entries": [
          {"path": "usr/bin/.wh.tool"},
          {"path": "usr/bin/tool", "data": "same layer: the whiteout does not hide it"},
          {"path": "big2", "size": 5000001}
        ]}
      ]
    })
}

#[test]
fn layers_match_gnu_tar_for_every_transport() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let spec = layered_spec();
    let layout = w.join("layout");
    mkimage(&with_format(&spec, "oci"), &layout);
    mkimage(&with_format(&spec, "oci-archive"), &w.join("oci.tar"));
    mkimage(&with_format(&spec, "docker-archive"), &w.join("docker.tar"));
    let want_dir = w.join("want");
    expected(&layout, &want_dir);
    let want = tree(&want_dir);
    assert!(want.entries.len() > 25, "{:?}", want.entries.keys());
    assert!(
        !want.links.is_empty(),
        "the reference has the cross-layer hard links"
    );

    for (i, src) in [
        format!("oci:{}:v1", layout.display()),
        format!("oci:{}", layout.display()),
        format!("oci-archive:{}:v1", w.join("oci.tar").display()),
        format!("docker-archive:{}:app:v1", w.join("docker.tar").display()),
        format!("docker-archive:{}", w.join("docker.tar").display()),
    ]
    .iter()
    .enumerate()
    {
        let img = w.join(format!("{i}.img"));
        let out = ok(myst().args(["mkext2", "-t", src]).arg(&img));
        // The ext2 writer reads each compressed layer once, front to back.
        assert!(
            stdout(&out).contains("compressed layer restarts: 0"),
            "{}",
            stdout(&out)
        );
        let got_dir = w.join(format!("got{i}"));
        extract(&img, &got_dir);
        assert_same(src, &tree(&got_dir), &want);

        let cpio = w.join(format!("{i}.cpio"));
        ok(myst().args(["mkcpio", src]).arg(&cpio));
        let cx = w.join(format!("cpio{i}"));
        fs::create_dir(&cx).unwrap();
        ok(Command::new("bsdtar")
            .args(["-x", "-p", "--numeric-owner", "-f"])
            .arg(&cpio)
            .arg("-C")
            .arg(&cx));
        assert_same(
            &format!("mkcpio {src}"),
            &cpio_view(tree(&cx)),
            &cpio_view(want.clone()),
        );
    }
}

#[test]
fn config_json_from_the_image_config() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = w.join("layout");
    mkimage(&with_format(&layered_spec(), "oci"), &layout);
    let img = w.join("app.img");
    let cfg = w.join("config.json");
    ok(myst()
        .args(["mkext2", "--config-out"])
        .arg(&cfg)
        .arg(format!("oci:{}", layout.display()))
        .arg(&img));
    let c: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    // "sh" resolved against the image's PATH (/usr/local/bin:/usr/bin:/bin):
    // only /bin/sh exists.
    assert_eq!(c["ApplicationPath"], "/bin/sh");
    assert_eq!(c["ApplicationParameters"], json!(["-c", "echo hi"]));
    assert_eq!(
        c["EnvironmentVariables"],
        json!([
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "LANG=C.UTF-8",
            "HOME=/root"
        ])
    );
    assert_eq!(c["CurrentWorkingDirectory"], "/srv");
    assert_eq!(c["HostApplicationParameters"], false);

    // No image without a program: --config-out fails, and writes nothing.
    let mut spec = layered_spec();
    spec["config"] = json!({});
    let l2 = w.join("noprog");
    mkimage(&with_format(&spec, "oci"), &l2);
    let o = myst()
        .args(["mkext2", "--config-out"])
        .arg(w.join("c2.json"))
        .arg(format!("oci:{}", l2.display()))
        .arg(w.join("c2.img"))
        .output()
        .unwrap();
    assert!(fails(&o).contains("neither Entrypoint nor Cmd"));
    assert!(!w.join("c2.json").exists() && !w.join("c2.img").exists());
}

#[test]
fn same_image_same_bytes() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let spec = layered_spec();
    let layout = w.join("layout");
    mkimage(&with_format(&spec, "oci"), &layout);
    mkimage(&with_format(&spec, "oci-archive"), &w.join("oci.tar"));
    let sde = "1500000000";
    let build = |src: String, img: &Path| {
        ok(myst()
            .env("SOURCE_DATE_EPOCH", sde)
            .args(["mkext2", &src])
            .arg(img));
        fs::read(img).unwrap()
    };
    let a = build(format!("oci:{}", layout.display()), &w.join("a.img"));
    let b = build(format!("oci:{}", layout.display()), &w.join("b.img"));
    let c = build(
        format!("oci-archive:{}", w.join("oci.tar").display()),
        &w.join("c.img"),
    );
    assert!(a == b, "two builds of one layout differ");
    assert!(a == c, "the layout and the same layout in a tar differ");
    let cp = |src: String, out: &Path| {
        ok(myst()
            .env("SOURCE_DATE_EPOCH", sde)
            .args(["mkcpio", &src])
            .arg(out));
        fs::read(out).unwrap()
    };
    assert!(
        cp(format!("oci:{}", layout.display()), &w.join("a.cpio"))
            == cp(
                format!("oci-archive:{}", w.join("oci.tar").display()),
                &w.join("b.cpio")
            )
    );
    // Times are clamped.
    let x = w.join("x");
    extract(&w.join("a.img"), &x);
    let m = manifest(&x);
    let max = m.entries.values().map(|e| e.mtime).max().unwrap();
    assert!(max <= 1500000000, "{max}");
}

/// A spec's image at `dir/name`, built in the given format.
fn build_bad(w: &Path, name: &str, layers: Value) -> PathBuf {
    let p = w.join(name);
    mkimage(&json!({"format": "oci", "layers": layers}), &p);
    p
}

fn mkext2_fails(src: &str, w: &Path, name: &str) -> String {
    let img = w.join(format!("{name}.img"));
    let o = myst().args(["mkext2", src]).arg(&img).output().unwrap();
    let err = fails(&o);
    assert!(
        !img.exists(),
        "{name}: a failed build left {}",
        img.display()
    );
    let cpio = w.join(format!("{name}.cpio"));
    let o = myst().args(["mkcpio", src]).arg(&cpio).output().unwrap();
    let err2 = fails(&o);
    assert!(
        !cpio.exists(),
        "{name}: a failed mkcpio left {}",
        cpio.display()
    );
    assert_eq!(err, err2, "{name}: mkext2 and mkcpio say the same");
    // No temporary files left behind either.
    for e in fs::read_dir(w).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.ends_with(".tmp"), "{name}: left {n}");
    }
    err
}

fn blob_path(layout: &Path, n: usize) -> PathBuf {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"][0]["digest"].as_str().unwrap();
    let m: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap())
            .unwrap();
    let d = m["layers"][n]["digest"].as_str().unwrap();
    layout.join("blobs/sha256").join(&d[7..])
}

#[test]
fn bad_images_fail_clearly_and_write_nothing() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let ok_layer = json!({"compression": "gzip", "entries": [f("a", "a")]});

    // A corrupted blob: its digest no longer matches.
    let l = build_bad(w, "corrupt", json!([ok_layer]));
    let b = blob_path(&l, 0);
    let mut bytes = fs::read(&b).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0x55;
    fs::write(&b, &bytes).unwrap();
    let err = mkext2_fails(&format!("oci:{}", l.display()), w, "corrupt");
    let name = b.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&format!("blob sha256:{name} does not match its descriptor")),
        "{err}"
    );

    // A missing blob.
    let l = build_bad(w, "missing", json!([ok_layer]));
    let b = blob_path(&l, 0);
    fs::remove_file(&b).unwrap();
    let err = mkext2_fails(&format!("oci:{}", l.display()), w, "missing");
    assert!(err.contains("missing blob sha256:"), "{err}");

    // Paths that leave the root.
    for (name, entries, what) in [
        ("dotdot", json!([f("../escape", "x")]), "'..'"),
        ("dotdot2", json!([f("a/../../escape", "x")]), "'..'"),
        ("absolute", json!([f("/etc/passwd", "x")]), "absolute path"),
        (
            "hardlinkout",
            json!([{"path": "h", "type": "link", "link": "../../etc/passwd"}]),
            "'..'",
        ),
    ] {
        let l = build_bad(
            w,
            name,
            json!([{"compression": "gzip", "entries": entries}]),
        );
        let err = mkext2_fails(&format!("oci:{}", l.display()), w, name);
        assert!(
            err.contains("layer 1 (sha256:") && err.contains(what),
            "{name}: {err}"
        );
    }
    // Through a symbolic link, in the same layer or from a lower one.
    let l = build_bad(
        w,
        "symlink",
        json!([
            {"compression": "gzip", "entries": [{"path": "evil", "type": "symlink", "link": "/etc"}]},
            {"compression": "zstd", "entries": [f("evil/passwd", "owned")]}
        ]),
    );
    let err = mkext2_fails(&format!("oci:{}", l.display()), w, "symlink");
    assert!(
        err.contains("layer 2") && err.contains("passes through the symbolic link /evil"),
        "{err}"
    );

    // A truncated gzip stream whose descriptor matches (so only the
    // decompressor can tell).
    let good = build_bad(
        w,
        "trunc-src",
        json!([{"compression": "none", "entries": [{"path": "big", "size": 100000}]}]),
    );
    let tar = fs::read(blob_path(&good, 0)).unwrap();
    let gz = {
        let o = Command::new("gzip")
            .arg("-c")
            .arg(blob_path(&good, 0))
            .output()
            .unwrap();
        o.stdout
    };
    let _ = tar;
    use base64_lite::encode;
    let raw_truncated_gz = &gz[..gz.len() / 2];
    // A layer whose bytes are given whole: mkimage.py "raw" with
    // compression "none" stores them as they are, so label the media type
    // gzip by writing the spec by hand.
    let l = w.join("truncgz");
    mkimage(
        &json!({"format": "oci", "layers": [{"compression": "none", "raw": encode(raw_truncated_gz)}]}),
        &l,
    );
    relabel_gzip(&l);
    let err = mkext2_fails(&format!("oci:{}", l.display()), w, "truncgz");
    assert!(err.contains("layer 1 (sha256:"), "{err}");

    // A truncated (plain) tar: the last file's data is cut short.
    let cut = &tar[..tar.len() - 2048 - 50000];
    let l = w.join("trunctar");
    mkimage(
        &json!({"format": "oci", "layers": [{"compression": "none", "raw": encode(cut)}]}),
        &l,
    );
    let err = mkext2_fails(&format!("oci:{}", l.display()), w, "trunctar");
    assert!(err.contains("truncated"), "{err}");

    // Not an image at all.
    let err = mkext2_fails(&format!("oci:{}", w.display()), w, "notlayout");
    assert!(err.contains("no oci-layout file"), "{err}");
    // Several images and no reference / a wrong reference.
    let err = mkext2_fails(&format!("oci:{}:nope", good.display()), w, "noref");
    assert!(err.contains("no image named \"nope\""), "{err}");
}

/// Turns layer 0 of a layout into a gzip layer by media type (its digest
/// stays right: only the manifest changes), rewriting manifest and index.
fn relabel_gzip(layout: &Path) {
    ok(Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import hashlib, json, os, sys
L = sys.argv[1]
B = os.path.join(L, "blobs", "sha256")
idx = json.load(open(os.path.join(L, "index.json")))
d = idx["manifests"][0]["digest"][7:]
m = json.load(open(os.path.join(B, d)))
m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
mb = json.dumps(m).encode()
h = hashlib.sha256(mb).hexdigest()
open(os.path.join(B, h), "wb").write(mb)
idx["manifests"][0]["digest"] = "sha256:" + h
idx["manifests"][0]["size"] = len(mb)
json.dump(idx, open(os.path.join(L, "index.json"), "w"))
"#,
        )
        .arg(layout));
}

mod base64_lite {
    /// Standard base64 with padding.
    pub fn encode(b: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }
}

/// An image built with umoci (insert, --whiteout, --opaque) equals what
/// `umoci unpack` makes of it, from the layout and from the oci-archive and
/// docker-archive that `skopeo copy` makes of it.
#[test]
fn umoci_images_match_umoci_unpack() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let lay = w.join("lay");
    let umoci = |args: &[&str]| {
        ok(Command::new("umoci").args(args));
    };
    let img = format!("{}:app", lay.display());
    umoci(&["init", "--layout", lay.to_str().unwrap()]);
    umoci(&["new", "--image", &img]);
    let r1 = w.join("r1");
    for d in ["etc", "bin", "opt/keep", "var/lib/x"] {
        fs::create_dir_all(r1.join(d)).unwrap();
    }
    fs::write(r1.join("etc/a"), "hello\n").unwrap();
    fs::write(r1.join("etc/b"), "b\n").unwrap();
    fs::hard_link(r1.join("etc/a"), r1.join("bin/hl")).unwrap();
    std::os::unix::fs::symlink("../etc/a", r1.join("bin/sl")).unwrap();
    fs::write(r1.join("opt/keep/k"), "k").unwrap();
    fs::write(r1.join("var/lib/x/y"), bytes(7, 300_000)).unwrap();
    ok(Command::new("mkfifo").arg(r1.join("var/fifo")));
    ok(Command::new("mknod")
        .arg(r1.join("var/null"))
        .args(["c", "1", "3"]));
    ok(Command::new("chown")
        .args(["1234:5678"])
        .arg(r1.join("etc/b")));
    ok(Command::new("chmod").args(["4711"]).arg(r1.join("etc/b")));
    ok(Command::new("touch")
        .args(["-h", "-d", "@1400000000"])
        .arg(r1.join("bin/sl")));
    ok(Command::new("touch")
        .args(["-d", "@1300000000"])
        .arg(r1.join("etc/a")));
    umoci(&["insert", "--image", &img, r1.to_str().unwrap(), "/"]);
    let r2 = w.join("r2");
    fs::create_dir_all(r2.join("etc")).unwrap();
    fs::write(r2.join("etc/b"), "changed\n").unwrap();
    umoci(&["insert", "--image", &img, r2.to_str().unwrap(), "/"]);
    umoci(&["insert", "--image", &img, "--whiteout", "/etc/a"]);
    umoci(&["insert", "--image", &img, "--whiteout", "/var/lib"]);
    let r3 = w.join("r3");
    fs::create_dir_all(&r3).unwrap();
    fs::write(r3.join("only"), "only this\n").unwrap();
    umoci(&[
        "insert",
        "--image",
        &img,
        "--opaque",
        r3.to_str().unwrap(),
        "/opt",
    ]);

    let bundle = w.join("bundle");
    umoci(&["unpack", "--image", &img, bundle.to_str().unwrap()]);
    let want = tree(&bundle.join("rootfs"));
    assert!(want.entries.contains_key(Path::new("opt/only")));
    assert!(!want.entries.contains_key(Path::new("opt/keep")));

    let docker = w.join("docker.tar");
    ok(Command::new("skopeo").args([
        "copy",
        &format!("oci:{img}"),
        &format!("docker-archive:{}:app:latest", docker.display()),
    ]));
    let ociar = w.join("oci.tar");
    ok(Command::new("skopeo").args([
        "copy",
        &format!("oci:{img}"),
        &format!("oci-archive:{}:app", ociar.display()),
    ]));
    for (i, src) in [
        format!("oci:{img}"),
        format!("oci-archive:{}", ociar.display()),
        format!("docker-archive:{}", docker.display()),
        format!("docker-archive:{}:app:latest", docker.display()),
    ]
    .iter()
    .enumerate()
    {
        let out = w.join(format!("{i}.img"));
        ok(myst().args(["mkext2", src]).arg(&out));
        let got = w.join(format!("got{i}"));
        extract(&out, &got);
        assert_same(src, &tree(&got), &want);
    }

    // Two images in one layout: a reference is needed, by name or digest.
    umoci(&["new", "--image", &format!("{}:empty", lay.display())]);
    let o = myst()
        .args(["mkext2", &format!("oci:{}", lay.display())])
        .arg(w.join("two.img"))
        .output()
        .unwrap();
    let err = fails(&o);
    assert!(err.contains("holds 2 images: name one"), "{err}");
    assert!(
        err.contains("app (sha256:") && err.contains("empty (sha256:"),
        "{err}"
    );
    let index: Value = serde_json::from_slice(&fs::read(lay.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "app")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let out = w.join("bydigest.img");
    ok(myst()
        .args(["mkext2", &format!("oci:{}:{digest}", lay.display())])
        .arg(&out));
    let got = w.join("bydigest");
    extract(&out, &got);
    assert_same("by digest", &tree(&got), &want);
}

/// busybox-static packed as a one-layer OCI image (written by the test
/// from the host's binary) runs under exec-linux, output equal to native.
#[test]
fn busybox_image_runs() {
    let bb = Path::new("/bin/busybox");
    assert!(
        bb.exists(),
        "busybox-static is needed (scripts/test.sh installs it)"
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let root = w.join("root");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(bb, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", root.join("bin/cat")).unwrap();
    fs::write(root.join("hello.txt"), "hello from the image\n").unwrap();
    let lay = w.join("lay");
    ok(Command::new("umoci").args(["init", "--layout", lay.to_str().unwrap()]));
    let img = format!("{}:bb", lay.display());
    ok(Command::new("umoci").args(["new", "--image", &img]));
    ok(Command::new("umoci").args(["insert", "--image", &img, root.to_str().unwrap(), "/"]));
    ok(Command::new("umoci").args([
        "config",
        "--image",
        &img,
        "--config.entrypoint",
        "sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        "cat /hello.txt; echo $0",
    ]));
    let ext2 = w.join("bb.img");
    let cfg = w.join("config.json");
    ok(myst()
        .args(["mkext2", "--config-out"])
        .arg(&cfg)
        .arg(format!("oci:{img}"))
        .arg(&ext2));
    let c: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    assert_eq!(c["ApplicationPath"], "/bin/sh");
    let mut args: Vec<String> = vec![c["ApplicationPath"].as_str().unwrap().into()];
    for a in c["ApplicationParameters"].as_array().unwrap() {
        args.push(a.as_str().unwrap().into());
    }
    let o = myst()
        .arg("exec-linux")
        .arg(&ext2)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // Natively: the same argv in a chroot into the tree the image was made from.
    let native = Command::new("/usr/sbin/chroot")
        .arg(&root)
        .args(&args)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        native.status.success(),
        "chroot: {}",
        String::from_utf8_lossy(&native.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&native.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("hello from the image"));
}
