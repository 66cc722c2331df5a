//! Mystikos's `config.json` (docs/FORMATS.md §8): parsed into validated types.
//!
//! Rules, as Mystikos's parser has them: keys are case-sensitive, `//` and
//! `/* */` comments are allowed, unknown keys are ignored (a key that
//! differs from a known one only in case gets a warning, since it is almost
//! certainly a typo that Mystikos would silently ignore), sizes are integer
//! bytes or strings with a k/m/g suffix rounded up to 4096, booleans are
//! `true`/`false` or `0`/`1`, and `version` must be `"0.1"`. Every wrong type
//! or value is one [`ConfigError`] naming the file, the key and what was
//! expected.
//!
//! The parser is independent of `exec-linux` so that a packaging command can
//! use the same one.

use myst_blockdev::trust::TrustedKey;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Page size sizes are rounded up to.
const PAGE: u64 = 4096;

/// A config file that cannot be used: which key, what was expected.
#[derive(Debug)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The key (`Mount[1].Type` for nested ones); empty for the whole file.
    pub key: String,
    /// What is wrong / what was expected.
    pub msg: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.msg)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.msg)
        }
    }
}

impl std::error::Error for ConfigError {}

/// ForkMode (an SGX-target setting: myst always forks for real).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkMode {
    /// "none".
    None,
    /// "pseudo".
    Pseudo,
    /// "pseudo_wait_for_exit_exec".
    PseudoWaitForExitExec,
}

impl ForkMode {
    /// Parses Mystikos's names.
    pub fn parse(s: &str) -> Option<ForkMode> {
        match s {
            "none" => Some(ForkMode::None),
            "pseudo" => Some(ForkMode::Pseudo),
            "pseudo_wait_for_exit_exec" => Some(ForkMode::PseudoWaitForExitExec),
            _ => None,
        }
    }
}

/// File system type of a `Mount` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// An ext2 image (trusted by docs/FORMATS.md §6).
    Ext2,
    /// A host directory or file.
    Hostfs,
    /// A CPIO archive loaded into memory.
    Ramfs,
}

impl MountType {
    /// The name used in config.json and /proc/mounts.
    pub fn name(self) -> &'static str {
        match self {
            MountType::Ext2 => "ext2",
            MountType::Hostfs => "hostfs",
            MountType::Ramfs => "ramfs",
        }
    }
}

/// One `Mount` entry. The source comes from `--mount SRC=TGT`.
#[derive(Debug, Clone)]
pub struct MountEntry {
    /// Index in the `Mount` array (for messages).
    pub index: usize,
    /// Absolute guest path.
    pub target: String,
    /// File system type.
    pub fstype: MountType,
    /// `Flags: ["ro"]`.
    pub read_only: bool,
    /// `PublicKey`: the only key this image may be signed by (ext2).
    pub public_key: Option<TrustedKey>,
    /// `RootHash`: the only root hash this image may have (ext2).
    pub root_hash: Option<[u8; 32]>,
    /// `KeyFile` (myst): 64 raw bytes decrypting a LUKS image (ext2).
    pub key: Option<Vec<u8>>,
}

impl MountEntry {
    /// `Mount[i] (TARGET)`, for messages.
    pub fn label(&self) -> String {
        format!("Mount[{}] ({})", self.index, self.target)
    }
}

/// A parsed config.json. `None` / empty: the key was absent.
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// `version`.
    pub version: Option<String>,
    /// `Debug` (SGX enclave attribute; no meaning on linux).
    pub debug: Option<bool>,
    /// `ProductID` (SGX; no meaning on linux).
    pub product_id: Option<u16>,
    /// `SecurityVersion` (SGX; no meaning on linux).
    pub security_version: Option<u16>,
    /// `CreateZeroBaseEnclave` (SGX; no meaning on linux).
    pub create_zero_base_enclave: Option<bool>,
    /// `EnclaveStartAddress` (SGX; no meaning on linux).
    pub enclave_start_address: Option<u64>,
    /// `MemorySize` in bytes.
    pub memory_size: Option<u64>,
    /// `MainStackSize` in bytes.
    pub main_stack_size: Option<u64>,
    /// `ThreadStackSize` in bytes.
    pub thread_stack_size: Option<u64>,
    /// `MaxAffinityCPUs`.
    pub max_affinity_cpus: Option<u64>,
    /// `NoBrk`.
    pub no_brk: Option<bool>,
    /// `ExecStack`.
    pub exec_stack: Option<bool>,
    /// `ApplicationPath`.
    pub application_path: Option<String>,
    /// `HostApplicationParameters`: the command line's program and
    /// arguments are used (true) or the config's (false, the default).
    pub host_application_parameters: Option<bool>,
    /// `ApplicationParameters`.
    pub application_parameters: Vec<String>,
    /// `EnvironmentVariables` ("K=V").
    pub environment_variables: Vec<String>,
    /// `HostEnvironmentVariables` (names).
    pub host_environment_variables: Vec<String>,
    /// `CurrentWorkingDirectory`.
    pub current_working_directory: Option<String>,
    /// `Hostname`.
    pub hostname: Option<String>,
    /// `ForkMode` (SGX; myst forks for real).
    pub fork_mode: Option<ForkMode>,
    /// `UnhandledSyscallEnosys`.
    pub unhandled_syscall_enosys: Option<bool>,
    /// `SyslogLevel` (no effect in myst).
    pub syslog_level: Option<String>,
    /// `Mount`.
    pub mounts: Vec<MountEntry>,
    /// Warnings found while parsing (keys that differ from known ones only in case).
    pub warnings: Vec<String>,
}

/// Every key this parser knows (for the case-typo warning).
const KNOWN: &[&str] = &[
    "version",
    "Debug",
    "ProductID",
    "SecurityVersion",
    "CreateZeroBaseEnclave",
    "EnclaveStartAddress",
    "MemorySize",
    "UserMemSize",
    "MainStackSize",
    "ThreadStackSize",
    "MaxAffinityCPUs",
    "NoBrk",
    "ExecStack",
    "ApplicationPath",
    "HostApplicationParameters",
    "ApplicationParameters",
    "EnvironmentVariables",
    "HostEnvironmentVariables",
    "CurrentWorkingDirectory",
    "Hostname",
    "ForkMode",
    "UnhandledSyscallEnosys",
    "SyslogLevel",
    "Mount",
];

const MOUNT_KEYS: &[&str] = &[
    "Target",
    "Type",
    "Flags",
    "PublicKey",
    "RootHash",
    "KeyFile",
];

/// Replaces `//` line comments and `/* */` block comments outside strings
/// with spaces (newlines kept, so serde_json's line/column stay right).
pub fn strip_comments(text: &str) -> Result<String, String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match (c, b.get(i + 1)) {
            (b'"', _) => {
                in_str = true;
                out.push(c);
                i += 1;
            }
            (b'/', Some(b'/')) => {
                while i < b.len() && b[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let start_line = text[..i].matches('\n').count() + 1;
                out.extend_from_slice(b"  ");
                i += 2;
                loop {
                    if i + 1 >= b.len() {
                        return Err(format!(
                            "the comment opened with /* on line {start_line} is not closed"
                        ));
                    }
                    if b[i] == b'*' && b[i + 1] == b'/' {
                        out.extend_from_slice(b"  ");
                        i += 2;
                        break;
                    }
                    out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes: still UTF-8.
    String::from_utf8(out).map_err(|_| "not UTF-8 text".to_string())
}

/// Parses `N`, `Nk`, `Nm`, `Ng` (either case) into bytes.
pub fn parse_size_str(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, mul) = match t.as_bytes().last()? {
        b'k' | b'K' => (&t[..t.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&t[..t.len() - 1], 1 << 20),
        b'g' | b'G' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// Parses 64 hexadecimal digits.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let t = s.trim();
    if t.len() != 64 || !t.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

struct Ctx<'a> {
    file: &'a Path,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn err(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    fn got(v: &Value) -> String {
        let s = v.to_string();
        if s.len() > 60 {
            format!("{}...", &s[..s.floor_char_boundary(57)])
        } else {
            s
        }
    }

    fn string(&self, key: &str, v: &Value) -> Result<String, ConfigError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.err(key, format!("expected a string, got {}", Self::got(v)))),
        }
    }

    fn abs_path(&self, key: &str, v: &Value) -> Result<String, ConfigError> {
        let s = self.string(key, v)?;
        if !s.starts_with('/') || s.contains('\0') {
            return Err(self.err(
                key,
                format!("expected an absolute path (starting with /), got {s:?}"),
            ));
        }
        Ok(s)
    }

    fn boolean(&self, key: &str, v: &Value) -> Result<bool, ConfigError> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
            Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
            _ => Err(self.err(
                key,
                format!("expected true, false, 0 or 1, got {}", Self::got(v)),
            )),
        }
    }

    fn integer(&self, key: &str, v: &Value, min: u64, max: u64) -> Result<u64, ConfigError> {
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(
                key,
                format!(
                    "expected an integer from {min} to {max}, got {}",
                    Self::got(v)
                ),
            )),
        }
    }

    fn size(&self, key: &str, v: &Value) -> Result<u64, ConfigError> {
        let bad = || {
            self.err(
                key,
                format!(
                    "expected a size: integer bytes or a string like \"40m\" (suffix k, m or g), got {}",
                    Self::got(v)
                ),
            )
        };
        let n = match v {
            Value::Number(n) => n.as_u64().ok_or_else(bad)?,
            Value::String(s) => parse_size_str(s).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        if n == 0 {
            return Err(self.err(key, "expected a size greater than 0"));
        }
        n.checked_add(PAGE - 1)
            .map(|x| x & !(PAGE - 1))
            .ok_or_else(|| self.err(key, "the size is too large"))
    }

    fn strings(&self, key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
        let Value::Array(a) = v else {
            return Err(self.err(
                key,
                format!("expected an array of strings, got {}", Self::got(v)),
            ));
        };
        a.iter()
            .enumerate()
            .map(|(i, x)| self.string(&format!("{key}[{i}]"), x))
            .collect()
    }

    /// A path in the config relative to the config file's directory.
    fn rel_path(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

fn warn_case(key: &str, known: &[&str], warnings: &mut Vec<String>, file: &Path, prefix: &str) {
    if known.contains(&key) {
        return;
    }
    if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        warnings.push(format!(
            "{}: {prefix}{key} is not a config key (keys are case-sensitive; did you mean {k}?); ignored",
            file.display()
        ));
    }
}

impl AppConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<AppConfig, ConfigError> {
        let text = std::fs::read(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            msg: format!("cannot read it: {e}"),
        })?;
        let text = String::from_utf8(text).map_err(|_| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            msg: "not UTF-8 text".into(),
        })?;
        AppConfig::parse(&text, path)
    }

    /// Parses config text; `file` names it in messages and anchors relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<AppConfig, ConfigError> {
        let dir = file
            .parent()
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        let cx = Ctx { file, dir };
        let clean = strip_comments(text).map_err(|m| cx.err("", m))?;
        let root: Value =
            serde_json::from_str(&clean).map_err(|e| cx.err("", format!("not valid JSON: {e}")))?;
        let Value::Object(obj) = root else {
            return Err(cx.err("", "expected a JSON object ({ ... }) at the top"));
        };
        let mut c = AppConfig::default();
        for key in obj.keys() {
            warn_case(key, KNOWN, &mut c.warnings, file, "");
        }
        let get = |k: &str| obj.get(k);
        if let Some(v) = get("version") {
            let s = cx.string("version", v)?;
            if s != "0.1" {
                return Err(cx.err("version", format!("expected \"0.1\", got {s:?}")));
            }
            c.version = Some(s);
        }
        if let Some(v) = get("Debug") {
            c.debug = Some(cx.boolean("Debug", v)?);
        }
        if let Some(v) = get("ProductID") {
            c.product_id = Some(cx.integer("ProductID", v, 0, 65535)? as u16);
        }
        if let Some(v) = get("SecurityVersion") {
            c.security_version = Some(cx.integer("SecurityVersion", v, 0, 65535)? as u16);
        }
        if let Some(v) = get("CreateZeroBaseEnclave") {
            c.create_zero_base_enclave = Some(cx.boolean("CreateZeroBaseEnclave", v)?);
        }
        if let Some(v) = get("EnclaveStartAddress") {
            let a = cx.integer("EnclaveStartAddress", v, 1, u64::MAX)?;
            if a % PAGE != 0 {
                return Err(cx.err(
                    "EnclaveStartAddress",
                    format!("expected a multiple of 4096, got {a}"),
                ));
            }
            c.enclave_start_address = Some(a);
        }
        // UserMemSize is Mystikos's legacy name; MemorySize wins over it.
        for k in ["UserMemSize", "MemorySize"] {
            if let Some(v) = get(k) {
                c.memory_size = Some(cx.size(k, v)?);
            }
        }
        if let Some(v) = get("MainStackSize") {
            c.main_stack_size = Some(cx.size("MainStackSize", v)?);
        }
        if let Some(v) = get("ThreadStackSize") {
            c.thread_stack_size = Some(cx.size("ThreadStackSize", v)?);
        }
        if let Some(v) = get("MaxAffinityCPUs") {
            c.max_affinity_cpus = Some(cx.integer("MaxAffinityCPUs", v, 1, 1 << 20)?);
        }
        if let Some(v) = get("NoBrk") {
            c.no_brk = Some(cx.boolean("NoBrk", v)?);
        }
        if let Some(v) = get("ExecStack") {
            c.exec_stack = Some(cx.boolean("ExecStack", v)?);
        }
        if let Some(v) = get("ApplicationPath") {
            c.application_path = Some(cx.abs_path("ApplicationPath", v)?);
        }
        if let Some(v) = get("HostApplicationParameters") {
            c.host_application_parameters = Some(cx.boolean("HostApplicationParameters", v)?);
        }
        if let Some(v) = get("ApplicationParameters") {
            c.application_parameters = cx.strings("ApplicationParameters", v)?;
            if let Some(i) = c
                .application_parameters
                .iter()
                .position(|a| a.contains('\0'))
            {
                return Err(cx.err(
                    &format!("ApplicationParameters[{i}]"),
                    "expected a string without NUL characters",
                ));
            }
        }
        if let Some(v) = get("EnvironmentVariables") {
            c.environment_variables = cx.strings("EnvironmentVariables", v)?;
            for (i, e) in c.environment_variables.iter().enumerate() {
                let key = format!("EnvironmentVariables[{i}]");
                match e.split_once('=') {
                    Some((name, _)) if !name.is_empty() && !e.contains('\0') => {
                        if name == "MYST_TARGET" {
                            return Err(cx.err(
                                &key,
                                "MYST_TARGET is set by myst (to \"linux\") and cannot be configured",
                            ));
                        }
                    }
                    _ => return Err(cx.err(&key, format!("expected \"NAME=VALUE\", got {e:?}"))),
                }
            }
        }
        if let Some(v) = get("HostEnvironmentVariables") {
            c.host_environment_variables = cx.strings("HostEnvironmentVariables", v)?;
            for (i, n) in c.host_environment_variables.iter().enumerate() {
                if n.is_empty() || n.contains('=') || n.contains('\0') {
                    return Err(cx.err(
                        &format!("HostEnvironmentVariables[{i}]"),
                        format!("expected a variable name (without =), got {n:?}"),
                    ));
                }
            }
        }
        if let Some(v) = get("CurrentWorkingDirectory") {
            c.current_working_directory = Some(cx.abs_path("CurrentWorkingDirectory", v)?);
        }
        if let Some(v) = get("Hostname") {
            let h = cx.string("Hostname", v)?;
            if h.is_empty() || h.len() > 64 || h.contains('\0') {
                return Err(cx.err(
                    "Hostname",
                    format!("expected 1 to 64 characters (a uname node name), got {h:?}"),
                ));
            }
            c.hostname = Some(h);
        }
        if let Some(v) = get("ForkMode") {
            let s = cx.string("ForkMode", v)?;
            c.fork_mode = Some(ForkMode::parse(&s).ok_or_else(|| {
                cx.err(
                    "ForkMode",
                    format!(
                        "expected \"none\", \"pseudo\" or \"pseudo_wait_for_exit_exec\", got {s:?}"
                    ),
                )
            })?);
        }
        if let Some(v) = get("UnhandledSyscallEnosys") {
            c.unhandled_syscall_enosys = Some(cx.boolean("UnhandledSyscallEnosys", v)?);
        }
        if let Some(v) = get("SyslogLevel") {
            c.syslog_level = Some(cx.string("SyslogLevel", v)?);
        }
        if let Some(v) = get("Mount") {
            let Value::Array(list) = v else {
                return Err(cx.err(
                    "Mount",
                    format!(
                        "expected an array of {{\"Target\", \"Type\"}} objects, got {}",
                        Ctx::got(v)
                    ),
                ));
            };
            for (i, m) in list.iter().enumerate() {
                let entry = parse_mount(&cx, i, m, &mut c.warnings)?;
                if let Some(prev) = c.mounts.iter().find(|p| p.target == entry.target) {
                    return Err(cx.err(
                        &format!("Mount[{i}].Target"),
                        format!(
                            "{} is already the target of Mount[{}]",
                            entry.target, prev.index
                        ),
                    ));
                }
                c.mounts.push(entry);
            }
        }
        Ok(c)
    }
}

fn parse_mount(
    cx: &Ctx<'_>,
    i: usize,
    m: &Value,
    warnings: &mut Vec<String>,
) -> Result<MountEntry, ConfigError> {
    let p = format!("Mount[{i}]");
    let Value::Object(o): &Value = m else {
        return Err(cx.err(
            &p,
            format!(
                "expected an object with Target and Type, got {}",
                Ctx::got(m)
            ),
        ));
    };
    let o: &Map<String, Value> = o;
    for key in o.keys() {
        warn_case(key, MOUNT_KEYS, warnings, cx.file, &format!("{p}."));
    }
    let k = |name: &str| format!("{p}.{name}");
    let target = match o.get("Target") {
        Some(v) => cx.abs_path(&k("Target"), v)?,
        None => return Err(cx.err(&k("Target"), "missing (the absolute mount point)")),
    };
    if target == "/" || target.split('/').any(|c| c == "." || c == "..") {
        return Err(cx.err(
            &k("Target"),
            format!("expected a mount point below / without . or .. components, got {target:?}"),
        ));
    }
    let target = {
        let t = target.trim_end_matches('/');
        let mut norm = String::new();
        for c in t.split('/').filter(|c| !c.is_empty()) {
            norm.push('/');
            norm.push_str(c);
        }
        norm
    };
    let fstype = match o.get("Type") {
        Some(v) => match cx.string(&k("Type"), v)?.as_str() {
            "ext2" => MountType::Ext2,
            "hostfs" => MountType::Hostfs,
            "ramfs" => MountType::Ramfs,
            other => {
                return Err(cx.err(
                    &k("Type"),
                    format!("expected \"ext2\", \"hostfs\" or \"ramfs\", got {other:?}"),
                ))
            }
        },
        None => return Err(cx.err(&k("Type"), "missing (\"ext2\", \"hostfs\" or \"ramfs\")")),
    };
    let mut read_only = false;
    if let Some(v) = o.get("Flags") {
        for (j, f) in cx.strings(&k("Flags"), v)?.iter().enumerate() {
            match f.as_str() {
                "ro" => read_only = true,
                "rw" => read_only = false,
                other => {
                    return Err(cx.err(
                        &format!("{p}.Flags[{j}]"),
                        format!("expected \"ro\" or \"rw\", got {other:?}"),
                    ))
                }
            }
        }
    }
    let ext2_only = |name: &str| {
        cx.err(
            &k(name),
            format!(
                "only an ext2 mount can have one (this one is {})",
                fstype.name()
            ),
        )
    };
    let mut public_key = None;
    match o.get("PublicKey") {
        None | Some(Value::Null) => {}
        Some(_) if fstype != MountType::Ext2 => return Err(ext2_only("PublicKey")),
        Some(v) => {
            let s = cx.string(&k("PublicKey"), v)?;
            // An inline PEM, or the path of a PEM file relative to the config.
            let (pem, from) = if s.contains("-----BEGIN") {
                (s.replace("\\n", "\n"), "inline PEM".to_string())
            } else {
                let path = cx.rel_path(&s);
                let pem = std::fs::read_to_string(&path).map_err(|e| {
                    cx.err(
                        &k("PublicKey"),
                        format!("cannot read the key file {}: {e}", path.display()),
                    )
                })?;
                (pem, path.display().to_string())
            };
            public_key = Some(
                TrustedKey::from_pem(&pem)
                    .map_err(|e| cx.err(&k("PublicKey"), format!("{from}: {e}")))?,
            );
        }
    }
    let mut root_hash = None;
    match o.get("RootHash") {
        None | Some(Value::Null) => {}
        Some(_) if fstype != MountType::Ext2 => return Err(ext2_only("RootHash")),
        Some(v) => {
            let s = cx.string(&k("RootHash"), v)?;
            root_hash = Some(parse_hex32(&s).ok_or_else(|| {
                cx.err(
                    &k("RootHash"),
                    format!("expected 64 hexadecimal digits (as `myst fssig --roothash` prints), got {s:?}"),
                )
            })?);
        }
    }
    let mut key = None;
    match o.get("KeyFile") {
        None | Some(Value::Null) => {}
        Some(_) if fstype != MountType::Ext2 => return Err(ext2_only("KeyFile")),
        Some(v) => {
            let s = cx.string(&k("KeyFile"), v)?;
            let path = cx.rel_path(&s);
            let bytes = std::fs::read(&path).map_err(|e| {
                cx.err(
                    &k("KeyFile"),
                    format!("cannot read the key file {}: {e}", path.display()),
                )
            })?;
            if bytes.len() != 64 {
                return Err(cx.err(
                    &k("KeyFile"),
                    format!(
                        "{}: a key file holds 64 raw bytes (as for mkext2 --encrypt), this one has {}",
                        path.display(),
                        bytes.len()
                    ),
                ));
            }
            key = Some(bytes);
        }
    }
    Ok(MountEntry {
        index: i,
        target,
        fstype,
        read_only,
        public_key,
        root_hash,
        key,
    })
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
            "[0-9]{1,6}[kmgKMGx]?".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(
                            KNOWN.iter().chain(MOUNT_KEYS).copied().collect::<Vec<_>>()
                        ),
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        /// Any bytes: an error or a config, never a panic.
        #[test]
        fn arbitrary_text_never_panics(t in "\\PC{0,200}") {
            let _ = AppConfig::parse(&t, Path::new("/nonexistent/c.json"));
        }

        /// Objects of known keys with values of any type: validated, never
        /// a panic; accepted sizes are whole pages.
        #[test]
        fn known_keys_with_any_values(kv in prop::collection::vec((prop::sample::select(KNOWN.to_vec()), value()), 0..8)) {
            let obj: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let text = Value::Object(obj).to_string();
            if let Ok(c) = AppConfig::parse(&text, Path::new("/nonexistent/c.json")) {
                for s in [c.memory_size, c.main_stack_size, c.thread_stack_size].into_iter().flatten() {
                    prop_assert!(s > 0 && s % PAGE == 0);
                }
            }
        }

        /// Serialized JSON has no comments: stripping leaves it unchanged,
        /// whatever its strings hold (`//`, `/*`, quotes, escapes).
        #[test]
        fn strings_survive_comment_stripping(v in value()) {
            let text = v.to_string();
            prop_assert_eq!(strip_comments(&text).unwrap(), text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<AppConfig, ConfigError> {
        AppConfig::parse(t, Path::new("/cfg/config.json"))
    }

    fn err(t: &str) -> String {
        match parse(t) {
            Ok(_) => panic!("accepted: {t}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn comments_outside_strings_only() {
        let t = "{ // a comment\n \"Hostname\": \"a//b\", /* block\n */ \"version\": \"0.1\" }";
        let c = parse(t).unwrap();
        assert_eq!(c.hostname.as_deref(), Some("a//b"));
        assert!(err("{ /* open ").contains("not closed"));
    }

    #[test]
    fn sizes_round_up() {
        let c = parse(r#"{"MemorySize": "40m", "MainStackSize": 5000, "ThreadStackSize": "1K"}"#)
            .unwrap();
        assert_eq!(c.memory_size, Some(40 << 20));
        assert_eq!(c.main_stack_size, Some(8192));
        assert_eq!(c.thread_stack_size, Some(4096));
        assert!(err(r#"{"MemorySize": "40x"}"#).contains("MemorySize: expected a size"));
        assert!(err(r#"{"MemorySize": -1}"#).contains("MemorySize"));
        assert!(err(r#"{"MemorySize": 1.5}"#).contains("MemorySize"));
        assert!(err(r#"{"MemorySize": 0}"#).contains("greater than 0"));
    }

    #[test]
    fn booleans_and_types() {
        let c = parse(r#"{"NoBrk": 1, "ExecStack": false, "Debug": 0}"#).unwrap();
        assert_eq!(
            (c.no_brk, c.exec_stack, c.debug),
            (Some(true), Some(false), Some(false))
        );
        assert!(err(r#"{"NoBrk": 2}"#).contains("NoBrk: expected true, false, 0 or 1, got 2"));
        assert!(err(r#"{"NoBrk": "yes"}"#).contains("NoBrk"));
        assert!(err(r#"{"version": "0.2"}"#).contains("version: expected \"0.1\""));
        assert!(err(r#"{"version": 0.1}"#).contains("version: expected a string"));
        assert!(err(r#"{"ApplicationPath": "bin/x"}"#).contains("absolute"));
        assert!(err(r#"{"EnvironmentVariables": ["A"]}"#).contains("EnvironmentVariables[0]"));
        assert!(err(r#"{"EnvironmentVariables": ["MYST_TARGET=x"]}"#).contains("MYST_TARGET"));
        assert!(err(r#"{"ApplicationParameters": [1]}"#).contains("ApplicationParameters[0]"));
        assert!(err(r#"{"MaxAffinityCPUs": 0}"#).contains("MaxAffinityCPUs"));
        assert!(err(r#"{"ForkMode": "real"}"#).contains("ForkMode"));
        assert!(err(r#"[1]"#).contains("object"));
        assert!(err(r#"{"a": }"#).contains("not valid JSON"));
    }

    #[test]
    fn unknown_and_miscased_keys() {
        let c = parse(r#"{"Whatever": [1, {"x": 2}], "memorysize": "1g"}"#).unwrap();
        assert_eq!(c.memory_size, None);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("did you mean MemorySize"));
    }

    #[test]
    fn mounts() {
        let c = parse(
            r#"{"Mount": [{"Target": "/data/", "Type": "hostfs", "Flags": ["ro"]},
                          {"Target": "/img", "Type": "ext2", "RootHash": null, "PublicKey": null}]}"#,
        )
        .unwrap();
        assert_eq!(c.mounts.len(), 2);
        assert_eq!(c.mounts[0].target, "/data");
        assert!(c.mounts[0].read_only);
        assert_eq!(c.mounts[1].fstype, MountType::Ext2);
        assert!(err(r#"{"Mount": [{"Target": "/a", "Type": "nfs"}]}"#).contains("Mount[0].Type"));
        assert!(err(r#"{"Mount": [{"Type": "ramfs"}]}"#).contains("Mount[0].Target: missing"));
        assert!(err(r#"{"Mount": [{"Target": "/a/../b", "Type": "ramfs"}]}"#).contains(".."));
        assert!(
            err(r#"{"Mount": [{"Target": "/a", "Type": "hostfs", "RootHash": "00"}]}"#)
                .contains("only an ext2 mount")
        );
        assert!(
            err(r#"{"Mount": [{"Target": "/a", "Type": "ext2", "RootHash": "00"}]}"#)
                .contains("64 hexadecimal digits")
        );
        assert!(
            err(r#"{"Mount": [{"Target": "/a", "Type": "ext2", "Flags": ["exec"]}]}"#)
                .contains("Mount[0].Flags[0]")
        );
        assert!(err(
            r#"{"Mount": [{"Target": "/a", "Type": "ramfs"}, {"Target": "/a", "Type": "ramfs"}]}"#
        )
        .contains("already the target"));
    }
}
