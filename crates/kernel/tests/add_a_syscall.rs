//! docs/DESIGN.md "How to add a syscall" is a procedure; this test reads
//! it and checks that its worked example (getcpu) went exactly that way:
//! the table line of step 1 is in the table, the handler of step 2 is in the
//! module the line names, the guest program of step 3 calls the syscall, and
//! COMPATIBILITY names it. If the steps change, the example must follow them.

use myst_kernel::syscalls::table::{self, Arg};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The text of the "How to add a syscall" section.
fn section() -> String {
    let design = read("docs/DESIGN.md");
    let start = design
        .find("### How to add a syscall")
        .expect("docs/DESIGN.md has a 'How to add a syscall' section");
    let rest = &design[start + 4..];
    let end = rest
        .find("\n## ")
        .or_else(|| rest.find("\n### "))
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

#[test]
fn the_documented_steps_are_the_steps() {
    let s = section();
    // Step 1: the table line, as the section shows it, is in the table.
    let line = s
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("309 getcpu("))
        .expect("step 1 shows getcpu's table line");
    let table_src = read("crates/kernel/src/syscalls/table.rs");
    assert!(
        table_src.lines().any(|l| l.trim() == line),
        "the table does not hold the line step 1 shows: {line}"
    );
    // ... and the table derives what the section says it derives.
    let e = table::lookup(309).expect("getcpu in the table");
    assert_eq!(e.name, "getcpu");
    assert!(e.implemented() && !e.blocks());
    assert_eq!(e.args, Some(&[Arg::Ptr, Arg::Ptr, Arg::Ptr][..]));
    assert_eq!(table::number("getcpu"), Some(309));

    // Step 2: the handler is a pub fn in the family module the line names,
    // and the section names that file.
    let call = line.split("=> ").nth(1).expect("a handler");
    let (module, rest) = call.split_once("::").expect("module::handler");
    let func = rest.split('(').next().expect("handler name");
    let file = format!("crates/kernel/src/syscalls/{module}.rs");
    assert!(
        s.contains(&format!("kernel/src/syscalls/{module}.rs")),
        "step 2 names the family file"
    );
    assert!(
        read(&file).contains(&format!("pub fn {func}(")),
        "{file} has no pub fn {func}"
    );

    // Step 3: the guest program the section names calls it, and
    // COMPATIBILITY lists it.
    let app = s
        .split('`')
        .find(|w| w.starts_with("tests/apps/") && w.ends_with(".c"))
        .expect("step 3 names a guest program");
    assert!(
        read(app).contains("SYS_getcpu"),
        "{app} does not call getcpu"
    );
    assert!(read("docs/COMPATIBILITY.md").contains("getcpu"));
}

#[test]
fn every_handler_names_an_existing_family_module() {
    // The table's handlers are `family::function(...)` (or a constant
    // result): a syscall is found where its family's name says.
    let table_src = read("crates/kernel/src/syscalls/table.rs");
    let lines = table_src.lines().map(str::trim);
    for l in lines.filter(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" => ")) {
        let Some(h) = l.split(" => ").nth(1) else {
            continue;
        };
        let h = h.trim();
        if h.starts_with("Ok(") || h.starts_with("Err(") || h.starts_with("host::") {
            continue;
        }
        let Some((module, _)) = h.split_once("::") else {
            panic!("handler without a family module: {l}")
        };
        let path = repo().join(format!("crates/kernel/src/syscalls/{module}.rs"));
        assert!(path.exists(), "{l}: no module {module}");
    }
}
