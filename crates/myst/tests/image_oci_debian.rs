//! A Debian root (debootstrap, cached; see debian_util) packed as a
//! one-layer OCI image by the test (GNU tar, gzip, Python for the JSON),
//! turned into an ext2 image and a config.json by `myst mkext2
//! --config-out`, runs python3 under exec-linux with output equal to the
//! same command in chroot.

mod debian_util;

use debian_util::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};

const PROGRAM: &str = "import sys, os, json, hashlib; \
print(sys.version_info[:3], os.getcwd(), os.environ.get('X'), os.environ.get('HOME')); \
print(sorted(os.listdir('/usr/lib/python3.11/json'))); \
print(json.dumps({'sha': hashlib.sha256(open('/srv/myst/data.bin', 'rb').read()).hexdigest()}))";

#[test]
fn debian_oci_image_runs_python3_like_chroot() {
    let Some(d) = debian() else {
        panic!("the Debian root is needed (root and debootstrap)");
    };
    let work = tempfile::tempdir_in(&d.work).unwrap();
    let w = work.path();
    let layer = w.join("layer.tar");
    let o = Command::new("tar")
        .args([
            "-c",
            "--sort=name",
            "--numeric-owner",
            "--xattrs-exclude=*",
            "-f",
        ])
        .arg(&layer)
        .arg("-C")
        .arg(&d.root)
        .arg(".")
        .output()
        .unwrap();
    assert_ok(&o, "tar of the Debian root");
    let spec = json!({
        "format": "oci",
        "ref": "debian",
        "config": {"Entrypoint": ["python3", "-B"], "Cmd": ["-c", PROGRAM],
                   "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "X=from-the-image"],
                   "WorkingDir": "/srv/myst"},
        "layers": [{"compression": "gzip", "tar_file": layer}]
    });
    let spec_path = w.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let layout = w.join("layout");
    let util = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oci_util/mkimage.py");
    let o = Command::new("python3")
        .arg(util)
        .arg(&spec_path)
        .arg(&layout)
        .output()
        .unwrap();
    assert_ok(&o, "mkimage.py");
    let img = w.join("debian.img");
    let cfg = w.join("config.json");
    let o = Command::new(myst_bin())
        .args(["mkext2", "--config-out"])
        .arg(&cfg)
        .arg(format!("oci:{}:debian", layout.display()))
        .arg(&img)
        .output()
        .unwrap();
    assert_ok(&o, "myst mkext2 oci:");
    let c: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    // python3 found on the image's PATH: /usr/local/bin has none, /usr/bin has it.
    assert_eq!(c["ApplicationPath"], "/usr/bin/python3");
    let app = c["ApplicationPath"].as_str().unwrap().to_string();
    let params: Vec<String> = c["ApplicationParameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let env: Vec<String> = c["EnvironmentVariables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let cwd = c["CurrentWorkingDirectory"].as_str().unwrap().to_string();
    assert_eq!(cwd, "/srv/myst");

    // exec-linux with the config when this build has --app-config-path;
    // otherwise the config's argv (environment and directory are then
    // exec-linux's own: none and /).
    let help = Command::new(myst_bin())
        .args(["exec-linux", "--help"])
        .output()
        .unwrap();
    let with_config = String::from_utf8_lossy(&help.stdout).contains("--app-config-path");
    let params_ref: Vec<&str> = params.iter().map(|s| s.as_str()).collect();
    let (got, native) = if with_config {
        let got = Command::new(myst_bin())
            .arg("exec-linux")
            .arg("--app-config-path")
            .arg(&cfg)
            .arg(&img)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut args = vec!["-C", &cwd, "-i"];
        args.extend(env.iter().map(|s| s.as_str()));
        args.push(&app);
        args.extend(params_ref.iter());
        (got, chroot_run(&d.root, "/usr/bin/env", &args))
    } else {
        (
            myst_run(&[], &img, &app, &params_ref),
            chroot_run(&d.root, &app, &params_ref),
        )
    };
    assert_ok(&got, "python3 under exec-linux");
    assert_ok(&native, "python3 in chroot");
    assert_eq!(text(&got), text(&native));
    assert!(text(&got).contains("\"sha\""), "{}", text(&got));
}
