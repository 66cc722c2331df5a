//! The image's run configuration as a Mystikos config.json.

use super::merge::{MKind, Merged};
use super::{OciError, RunConfig};

/// Docker's PATH when the image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A config.json and what it could not express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// The document.
    pub json: String,
    /// The program's path in the image.
    pub application_path: String,
    /// Notes for the user (e.g. a `User` the config cannot express).
    pub warnings: Vec<String>,
}

fn is_exec_file(m: &Merged, id: usize) -> bool {
    matches!(m.nodes[id].kind, MKind::File { .. }) && m.nodes[id].meta.perm & 0o111 != 0
}

/// `ApplicationPath`, `ApplicationParameters`, `EnvironmentVariables`,
/// `CurrentWorkingDirectory` from Entrypoint + Cmd, Env and WorkingDir as
/// `docker run` uses them: argv is Entrypoint followed by Cmd; a program
/// name without `/` is looked up in the image's PATH (its Env, else
/// Docker's default) inside the merged tree; HOME=/root is added for root
/// when Env has no HOME, as Docker does.
pub fn app_config(run: &RunConfig, tree: &Merged) -> Result<AppConfig, OciError> {
    let mut argv: Vec<String> = run.entrypoint.clone().unwrap_or_default();
    argv.extend(run.cmd.clone().unwrap_or_default());
    let Some(prog) = argv.first().cloned() else {
        return Err(OciError::Invalid(
            "the image's config has neither Entrypoint nor Cmd: no program to run".into(),
        ));
    };
    let env = run.env.clone().unwrap_or_default();
    let cwd = match run.working_dir.as_deref() {
        Some(w) if !w.is_empty() => w.to_string(),
        _ => "/".to_string(),
    };
    if !cwd.starts_with('/') {
        return Err(OciError::Invalid(format!(
            "WorkingDir {cwd:?} is not an absolute path"
        )));
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let app = if prog.contains('/') {
        let p = if prog.starts_with('/') {
            prog.clone()
        } else {
            format!("{}/{}", cwd.trim_end_matches('/'), prog)
        };
        match tree.resolve(p.as_bytes()) {
            Some(id) if is_exec_file(tree, id) => p,
            _ => {
                return Err(OciError::Invalid(format!(
                    "the image's program {p} is not an executable file in the image"
                )))
            }
        }
    } else {
        path_var
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{}/{}", d.trim_end_matches('/'), prog))
            .find(|p| tree.resolve(p.as_bytes()).is_some_and(|id| is_exec_file(tree, id)))
            .ok_or_else(|| {
                OciError::Invalid(format!(
                    "the image's program {prog:?} is not an executable file in any directory of its PATH ({path_var})"
                ))
            })?
    };
    let mut warnings = Vec::new();
    let user = run.user.as_deref().unwrap_or("");
    let root = matches!(
        user,
        "" | "0" | "root" | "0:0" | "root:root" | "root:0" | "0:root"
    );
    if !root {
        warnings.push(format!(
            "the image runs as User {user:?}; config.json has no user setting, so the program runs as myst's own user"
        ));
    }
    let mut envs = env.clone();
    if root && !env.iter().any(|e| e.starts_with("HOME=")) {
        envs.push("HOME=/root".into());
    }
    let doc = serde_json::json!({
        "version": "0.1",
        "ApplicationPath": app,
        "ApplicationParameters": argv[1..].to_vec(),
        "HostApplicationParameters": false,
        "EnvironmentVariables": envs,
        "CurrentWorkingDirectory": cwd,
    });
    let json = serde_json::to_string_pretty(&doc)
        .map_err(|e| OciError::Invalid(format!("config.json: {e}")))?;
    Ok(AppConfig {
        json: json + "\n",
        application_path: app,
        warnings,
    })
}
