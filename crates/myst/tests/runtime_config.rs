//! config.json (`--app-config-path`): every key's effect seen from inside a
//! guest program (tests/apps/config.c), the precedence between config and
//! command line, appenv.json, a config file written as Mystikos's docs show
//! it, and one clear error naming the key for each bad value.

mod runtime_common;
use runtime_common::*;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A root directory with /bin/config_<variant> and /appenv.json.
fn config_root(appenv: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let r = root();
    let dir = tempfile::Builder::new()
        .prefix("myst-cfg-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("work/dir")).expect("mkdir");
    for v in &r.variants {
        let name = format!("config_{v}");
        std::fs::copy(r.path.join("bin").join(&name), root.join("bin").join(&name)).expect("copy");
    }
    if let Some(a) = appenv {
        std::fs::write(root.join("appenv.json"), a).expect("write appenv");
    }
    (dir, root)
}

fn run_cfg(
    cfg: &Path,
    extra: &[&str],
    root: &Path,
    program: &[&str],
    env: &[(&str, &str)],
) -> Output {
    Command::new(myst_bin())
        .arg("exec-linux")
        .arg("--app-config-path")
        .arg(cfg)
        .args(extra)
        .arg(root)
        .args(program)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run myst")
}

/// `key=value` facts of the config program's output (argv and env lines kept in order).
fn facts(out: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let mut ordered = Vec::new();
    let mut map = BTreeMap::new();
    for l in out.lines() {
        if l.starts_with("argc=") || l.starts_with("argv[") || l.starts_with("env ") {
            ordered.push(l.to_string());
        } else if let Some(rest) = l.strip_prefix("nproc=") {
            // nproc=N affinity=M cpuinfo=K
            map.insert("nproc".into(), rest.split(' ').next().unwrap_or("").into());
            for part in l.split(' ').skip(1) {
                if let Some((k, v)) = part.split_once('=') {
                    map.insert(k.into(), v.into());
                }
            }
        } else if let Some(rest) = l.strip_prefix("stack perms=") {
            let mut it = rest.split(" kb=");
            map.insert("stack_perms".into(), it.next().unwrap_or("").into());
            map.insert("stack_kb".into(), it.next().unwrap_or("").into());
        } else if let Some((k, v)) = l.split_once('=') {
            map.insert(k.into(), v.into());
        }
    }
    (ordered, map)
}

fn host_cpus() -> usize {
    let r = root();
    let v = r.variants.first().expect("a variant");
    let out = Command::new(r.path.join("bin").join(format!("config_{v}")))
        .output()
        .expect("run natively");
    let (_, m) = facts(&text(&out));
    m["affinity"].parse().expect("affinity count")
}

#[test]
fn every_key_takes_effect() {
    let r = root();
    let (dir, root) = config_root(Some(
        r#"{"Env": ["PATH=/usr/local/bin", "FROM_APPENV=yes", "ENV_VAR1=ignored"]}"#,
    ));
    for v in &r.variants {
        let cfg = dir.path().join(format!("config_{v}.json"));
        std::fs::write(
            &cfg,
            format!(
                r#"{{
  "version": "0.1",
  "MemorySize": "24m",
  "MainStackSize": "32m",
  "ThreadStackSize": "1m",
  "ApplicationPath": "/bin/config_{v}",
  "ApplicationParameters": ["red", "green blue", ""],
  "HostApplicationParameters": false,
  "EnvironmentVariables": ["ENV_VAR1=1", "PATH=/bin", "CONFIG_ALLOC_MB=48", "CONFIG_STACK_KB=16384"],
  "HostEnvironmentVariables": ["TESTNAME", "NOT_SET_ON_HOST"],
  "CurrentWorkingDirectory": "/work/dir",
  "Hostname": "configured-host",
  "MaxAffinityCPUs": 1,
  "NoBrk": true,
  "ExecStack": 1
}}"#
            ),
        )
        .expect("write config");
        let out = run_cfg(
            &cfg,
            &[],
            &root,
            &[],
            &[("TESTNAME", "from host"), ("SECRET", "not passed")],
        );
        assert_ok(&out, &format!("config_{v}"));
        let (ordered, m) = facts(&text(&out));
        // argv and environment, exactly as a native run with them prints.
        let native = Command::new(root.join("bin").join(format!("config_{v}")))
            .arg0(format!("/bin/config_{v}"))
            .args(["red", "green blue", ""])
            .env_clear()
            .envs([
                ("ENV_VAR1", "1"),
                ("PATH", "/bin:/usr/local/bin"),
                ("CONFIG_ALLOC_MB", "48"),
                ("TESTNAME", "from host"),
                ("MYST_TARGET", "linux"),
                ("FROM_APPENV", "yes"),
            ])
            .output()
            .expect("native");
        let (native_ordered, nm) = facts(&text(&native));
        // (Natively, 16 MiB of stack would overflow the default 8 MiB.)
        let probe = "env CONFIG_STACK_KB=16384";
        assert!(ordered.iter().any(|l| l == probe), "{v}: {ordered:?}");
        let ordered: Vec<String> = ordered.into_iter().filter(|l| l != probe).collect();
        // Order: EnvironmentVariables, the host's, MYST_TARGET, appenv.json's new names.
        let env_order: Vec<&str> = ordered
            .iter()
            .filter(|l| l.starts_with("env "))
            .map(String::as_str)
            .collect();
        assert_eq!(
            env_order,
            [
                "env ENV_VAR1=1",
                "env PATH=/bin:/usr/local/bin",
                "env CONFIG_ALLOC_MB=48",
                "env TESTNAME=from host",
                "env MYST_TARGET=linux",
                "env FROM_APPENV=yes"
            ],
            "{v}"
        );
        // The same argv and (as a set) environment as a native run prints.
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        assert_eq!(
            sorted(&ordered),
            sorted(&native_ordered),
            "{v}: argv/environment"
        );
        let argv = |v: &[String]| {
            v.iter()
                .filter(|l| !l.starts_with("env "))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(argv(&ordered), argv(&native_ordered), "{v}: argv");
        assert_eq!(m["cwd"], "/work/dir", "{v}");
        assert_eq!(m["hostname"], "configured-host", "{v}");
        let cpus = host_cpus().min(1).to_string();
        assert_eq!(
            (&m["nproc"], &m["affinity"], &m["cpuinfo"]),
            (&cpus, &cpus, &cpus),
            "{v}: MaxAffinityCPUs"
        );
        assert_eq!(m["brk"], "fixed", "{v}: NoBrk");
        assert_eq!(nm["brk"], "grows", "{v}: natively brk grows");
        assert_eq!(m["stack_perms"], "rwxp", "{v}: ExecStack");
        assert_eq!(m["stack_kb"], (32 * 1024).to_string(), "{v}: MainStackSize");
        assert_eq!(m["stack_touch"], "1", "{v}: 16 MiB of a 32 MiB stack");
        assert_eq!(
            m["rlimit_stack"],
            (1 << 20).to_string(),
            "{v}: ThreadStackSize"
        );
        if let Some(t) = m.get("thread_stack") {
            assert_eq!(
                t,
                &(1 << 20).to_string(),
                "{v}: glibc's default thread stack"
            );
        }
        assert_eq!(
            m["alloc"], "failed",
            "{v}: 48 MiB within a 24 MiB MemorySize"
        );
        // --memory-size beats MemorySize (as Mystikos); the config beats
        // --main-stack-size.
        let out = run_cfg(
            &cfg,
            &["--memory-size", "256m", "--main-stack-size", "1m"],
            &root,
            &[],
            &[],
        );
        assert_ok(&out, "with --memory-size");
        let (_, m) = facts(&text(&out));
        assert_eq!(m["alloc"], "ok", "{v}: --memory-size 256m");
        assert_eq!(m["stack_kb"], (32 * 1024).to_string(), "{v}");
    }
}

#[test]
fn command_line_and_defaults() {
    let r = root();
    let (dir, root) = config_root(None);
    let v = r.variants.first().expect("a variant");
    let prog = format!("/bin/config_{v}");
    // HostApplicationParameters: the command line's program and arguments.
    let cfg = dir.path().join("host.json");
    std::fs::write(
        &cfg,
        r#"{"ApplicationPath": "/bin/nothing", "ApplicationParameters": ["cfg"], "HostApplicationParameters": 1}"#,
    )
    .expect("write");
    let out = run_cfg(
        &cfg,
        &[],
        &root,
        &[&prog, "cmd", "line"],
        &[("TESTNAME", "x")],
    );
    assert_ok(&out, "HostApplicationParameters");
    let (ordered, m) = facts(&text(&out));
    assert_eq!(
        ordered,
        vec![
            "argc=3".to_string(),
            format!("argv[0]={prog}"),
            "argv[1]=cmd".into(),
            "argv[2]=line".into(),
            "env MYST_TARGET=linux".into(),
        ]
    );
    // Without Hostname, CurrentWorkingDirectory, limits: the defaults.
    assert_eq!(m["cwd"], "/");
    assert_eq!(m["brk"], "grows");
    assert_eq!(m["stack_perms"], "rw-p");
    assert_eq!(m["affinity"], host_cpus().to_string());
    // Command-line equivalents apply when the config does not set the key.
    let out = run_cfg(
        &cfg,
        &[
            "--nobrk",
            "--exec-stack",
            "--max-affinity-cpus",
            "1",
            "--main-stack-size",
            "2m",
        ],
        &root,
        &[&prog],
        &[],
    );
    assert_ok(&out, "command-line options");
    let (_, m) = facts(&text(&out));
    assert_eq!(
        (
            m["brk"].as_str(),
            m["stack_perms"].as_str(),
            m["affinity"].as_str(),
            m["stack_kb"].as_str()
        ),
        ("fixed", "rwxp", "1", "2048")
    );
    // The config's program wins over the command line's, with a warning.
    let cfg2 = dir.path().join("app.json");
    std::fs::write(
        &cfg2,
        format!(r#"{{"ApplicationPath": "{prog}", "ApplicationParameters": ["cfg"]}}"#),
    )
    .expect("write");
    let out = run_cfg(&cfg2, &[], &root, &["/bin/other", "x"], &[]);
    assert_ok(&out, "ApplicationPath");
    assert!(text(&out).contains("argv[1]=cfg\n"), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ignored"));
    // UnhandledSyscallEnosys: false in the config beats the command line's true.
    for (val, code, errno) in [
        ("true", Some(0), Some("-1 errno=38")),
        ("false", Some(1), None),
    ] {
        let cfg3 = dir.path().join(format!("enosys_{val}.json"));
        std::fs::write(
            &cfg3,
            format!(r#"{{"UnhandledSyscallEnosys": {val}, "EnvironmentVariables": ["CONFIG_SYSCALL=1000"]}}"#),
        )
        .expect("write");
        let out = run_cfg(
            &cfg3,
            &["--unhandled-syscall-enosys", "true"],
            &root,
            &[&prog],
            &[],
        );
        assert_eq!(
            out.status.code(),
            code,
            "UnhandledSyscallEnosys {val}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, m) = facts(&text(&out));
        assert_eq!(
            m.get("syscall").map(String::as_str),
            errno,
            "UnhandledSyscallEnosys {val}"
        );
    }
}

#[test]
fn a_config_as_mystikos_documents_it_is_accepted() {
    let r = root();
    let (dir, root) = config_root(None);
    let v = r.variants.first().expect("a variant");
    // Written the way Mystikos's signing/packaging guide shows config.json.
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{
    // Mystikos configuration version number
    "version": "0.1",

    // OpenEnclave specific values

    // Whether we are running myst+OE+app in debug mode
    "Debug": 1,
    "ProductID": 1,
    "SecurityVersion": 1,

    // Mystikos specific values

    // The heap size of the user application. Increase this setting if your app experienced OOM.
    "MemorySize": "40m",
    // The path to the entry point application in rootfs
    "ApplicationPath": "/bin/config_{v}",
    // The parameters to the entry point application
    "ApplicationParameters": ["red", "green", "blue"],
    // Whether we allow "ApplicationParameters" to be overridden by command line options of "myst exec"
    "HostApplicationParameters": false,
    // The environment variables accessible inside the enclave.
    "EnvironmentVariables": ["ENV_VAR1=1", "ENV_VAR2=2"],
    "HostEnvironmentVariables": ["TESTNAME"],
    "CurrentWorkingDirectory": "/",
    "Hostname": "my-host",
    "ForkMode": "pseudo_wait_for_exit_exec",
    "CreateZeroBaseEnclave": false,
    "EnclaveStartAddress": 1048576,
    "SyslogLevel": "debug",
    "UnhandledSyscallEnosys": true,
    "SomethingMystikosAddsLater": {{"x": [1, 2]}}
}}"#
        ),
    )
    .expect("write");
    let out = run_cfg(&cfg, &[], &root, &[], &[("TESTNAME", "t")]);
    assert_ok(&out, "Mystikos's example config");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ordered, m) = facts(&text(&out));
    assert_eq!(
        ordered[..5],
        [
            "argc=4",
            &format!("argv[0]=/bin/config_{v}"),
            "argv[1]=red",
            "argv[2]=green",
            "argv[3]=blue"
        ]
    );
    assert_eq!(
        ordered[5..],
        [
            "env ENV_VAR1=1",
            "env ENV_VAR2=2",
            "env TESTNAME=t",
            "env MYST_TARGET=linux"
        ]
    );
    assert_eq!(m["hostname"], "my-host");
}

#[test]
fn bad_values_name_the_key() {
    let (dir, root) = config_root(None);
    let cases: &[(&str, &str)] = &[
        (r#"{"version": "1.0"}"#, "version: expected \"0.1\""),
        (r#"{"MemorySize": "40q"}"#, "MemorySize: expected a size"),
        (r#"{"MemorySize": true}"#, "MemorySize: expected a size"),
        (
            r#"{"MainStackSize": -4096}"#,
            "MainStackSize: expected a size",
        ),
        (
            r#"{"ThreadStackSize": [1]}"#,
            "ThreadStackSize: expected a size",
        ),
        (
            r#"{"MaxAffinityCPUs": 0}"#,
            "MaxAffinityCPUs: expected an integer",
        ),
        (
            r#"{"NoBrk": "true"}"#,
            "NoBrk: expected true, false, 0 or 1",
        ),
        (
            r#"{"ExecStack": 2}"#,
            "ExecStack: expected true, false, 0 or 1",
        ),
        (r#"{"Debug": "yes"}"#, "Debug: expected true, false, 0 or 1"),
        (r#"{"ProductID": "one"}"#, "ProductID: expected an integer"),
        (
            r#"{"SecurityVersion": 70000}"#,
            "SecurityVersion: expected an integer",
        ),
        (
            r#"{"ApplicationPath": "bin/app"}"#,
            "ApplicationPath: expected an absolute path",
        ),
        (
            r#"{"ApplicationParameters": "a b"}"#,
            "ApplicationParameters: expected an array of strings",
        ),
        (
            r#"{"EnvironmentVariables": ["NOEQUALS"]}"#,
            "EnvironmentVariables[0]: expected \"NAME=VALUE\"",
        ),
        (
            r#"{"HostEnvironmentVariables": ["A=B"]}"#,
            "HostEnvironmentVariables[0]: expected a variable name",
        ),
        (
            r#"{"CurrentWorkingDirectory": 7}"#,
            "CurrentWorkingDirectory: expected a string",
        ),
        (
            r#"{"Hostname": ""}"#,
            "Hostname: expected 1 to 64 characters",
        ),
        (r#"{"ForkMode": "fork"}"#, "ForkMode: expected \"none\""),
        (
            r#"{"UnhandledSyscallEnosys": "no"}"#,
            "UnhandledSyscallEnosys: expected true",
        ),
        (r#"{"Mount": {}}"#, "Mount: expected an array"),
        (
            r#"{"Mount": [{"Target": "/m", "Type": "nfs"}]}"#,
            "Mount[0].Type: expected \"ext2\"",
        ),
        (
            r#"{"Mount": [{"Target": "m", "Type": "ramfs"}]}"#,
            "Mount[0].Target: expected an absolute path",
        ),
        (
            r#"{"Mount": [{"Target": "/m", "Type": "ext2", "PublicKey": "missing.pem"}]}"#,
            "Mount[0].PublicKey: cannot read the key file",
        ),
        (
            r#"{"Mount": [{"Target": "/m", "Type": "ext2", "KeyFile": "missing.key"}]}"#,
            "Mount[0].KeyFile: cannot read the key file",
        ),
        (r#"{"MemorySize": "1m",}"#, "not valid JSON"),
    ];
    for (i, (cfg_text, needle)) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("bad{i}.json"));
        std::fs::write(&cfg, cfg_text).expect("write");
        let out = run_cfg(&cfg, &[], &root, &["/bin/x"], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cfg_text}: {err}");
        assert_eq!(err.lines().count(), 1, "{cfg_text}: {err}");
        assert!(err.starts_with("myst: error: "), "{cfg_text}: {err}");
        assert!(err.contains(&format!("bad{i}.json")), "{cfg_text}: {err}");
        assert!(
            err.contains(needle),
            "{cfg_text}: wanted {needle:?} in {err}"
        );
    }
    // --mount without a config, or naming no Target, or a Mount without source.
    let cfg = dir.path().join("mounts.json");
    std::fs::write(
        &cfg,
        r#"{"Mount": [{"Target": "/data", "Type": "hostfs"}]}"#,
    )
    .expect("write");
    let d = dir.path().to_str().expect("utf-8").to_string();
    for (args, needle) in [
        (
            vec![
                "exec-linux".to_string(),
                "--mount".into(),
                format!("{d}=/data"),
            ],
            "needs --app-config-path",
        ),
        (
            vec![
                "exec-linux".into(),
                "--app-config-path".into(),
                cfg.display().to_string(),
                "--mount".into(),
                format!("{d}=/other"),
            ],
            "/other is not the Target",
        ),
        (
            vec![
                "exec-linux".into(),
                "--app-config-path".into(),
                cfg.display().to_string(),
                "--mount".into(),
                d.clone(),
            ],
            "expected SRC=TARGET",
        ),
        (
            vec![
                "exec-linux".into(),
                "--app-config-path".into(),
                cfg.display().to_string(),
            ],
            "Mount[0] (/data): no source",
        ),
    ] {
        let out = Command::new(myst_bin())
            .args(&args)
            .arg(&root)
            .arg("/bin/x")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: wanted {needle:?} in {err}");
    }
}

#[test]
fn appenv_without_config() {
    let r = root();
    let (_dir, root) = config_root(Some(r#"{"Env": ["A=1", "MYST_TARGET=other", "PATH=/x"]}"#));
    let v = r.variants.first().expect("a variant");
    let out = myst_run(&[], &root, &format!("/bin/config_{v}"), &[]);
    assert_ok(&out, "appenv");
    let (ordered, _) = facts(&text(&out));
    assert_eq!(
        ordered[1..],
        [
            format!("argv[0]=/bin/config_{v}"),
            "env MYST_TARGET=linux".into(),
            "env A=1".into(),
            "env PATH=/x".into()
        ]
    );
}
