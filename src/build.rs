//! Build script: makes the operator page's one third-party asset, Leaflet, available to the
//! binary without committing it.
//!
//! Leaflet comes from npm, pinned by `src/ui/package-lock.json`. When `src/ui/node_modules/leaflet`
//! is absent (or holds another version than the lock file), this runs
//! `npm ci --no-audit --no-fund --prefer-offline` in `src/ui/`, then copies the distribution files
//! the page needs into `OUT_DIR/vendor/`, from where `src/http/ui.rs` embeds them
//! (`include_bytes!`). Files are rewritten only when their content changed, so a rerun of this
//! script does not make rustc recompile the crate. Without npm the build stops with a message
//! saying what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Files of `node_modules/leaflet/dist/` embedded in the binary (served under `/ui/vendor/`).
const LEAFLET_FILES: &[&str] = &[
    "leaflet.js",
    "leaflet.css",
    "images/layers.png",
    "images/layers-2x.png",
    "images/marker-icon.png",
    "images/marker-icon-2x.png",
    "images/marker-shadow.png",
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nerror: building the operator page (src/ui) failed:\n  {message}\n");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);
    let ui = manifest.join("src/ui");
    let leaflet = ui.join("node_modules/leaflet");

    // What this script reads. The page's own files (index.html, app.js, app.css) are embedded
    // with include_str! and tracked by rustc, not here. A watched path that does not exist makes
    // cargo rerun the script, which is what we want when node_modules was removed.
    println!("cargo:rerun-if-changed=src/build.rs");
    println!("cargo:rerun-if-changed=src/ui/package.json");
    println!("cargo:rerun-if-changed=src/ui/package-lock.json");
    println!("cargo:rerun-if-changed=src/ui/node_modules/leaflet/package.json");
    println!("cargo:rerun-if-env-changed=NPM");
    // `embed_migrations!` reads the migration folders at compile time, but only the files it
    // includes are tracked: a new migration folder must rebuild the crate too.
    println!("cargo:rerun-if-changed=migrations");

    let lock = read_text(&ui.join("package-lock.json"))?;
    let wanted = locked_version(&lock, "node_modules/leaflet")
        .ok_or("src/ui/package-lock.json does not pin `node_modules/leaflet`")?;
    let installed = std::fs::read_to_string(leaflet.join("package.json"))
        .ok()
        .and_then(|p| first_version(&p));
    if installed.as_deref() != Some(wanted.as_str()) {
        npm_ci(&ui)?;
        let now = std::fs::read_to_string(leaflet.join("package.json"))
            .ok()
            .and_then(|p| first_version(&p));
        if now.as_deref() != Some(wanted.as_str()) {
            return Err(format!(
                "`npm ci` ran in {} but node_modules/leaflet is {now:?}, the lock file wants {wanted}",
                ui.display()
            ));
        }
        backdate(&leaflet.join("package.json"), &ui.join("package-lock.json"));
    }

    for file in LEAFLET_FILES {
        let from = leaflet.join("dist").join(file);
        let bytes = std::fs::read(&from).map_err(|e| format!("reading {}: {e}", from.display()))?;
        write_if_changed(&out.join("vendor").join(file), &bytes)?;
    }
    write_if_changed(&out.join("vendor/VERSION"), wanted.as_bytes())?;
    Ok(())
}

/// Runs `npm ci` in `dir`, offline-friendly (uses npm's cache first, no audit/fund calls).
fn npm_ci(dir: &Path) -> Result<(), String> {
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
    // Not a cargo:warning: cargo would replay it on every later (fresh) build.
    eprintln!("src/ui/node_modules/leaflet is missing or outdated: running `{npm} ci` in src/ui");
    let status = Command::new(&npm)
        .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
        .current_dir(dir)
        .stdout(std::io::stderr()) // stdout is cargo's instruction channel
        .status()
        .map_err(|e| {
            format!(
                "could not run `{npm}` ({e}).\n  The operator page needs Leaflet from npm: install Node.js and npm \
                 (Debian: `apt-get install nodejs npm`), or set NPM to the npm executable, then build again.\n  \
                 (Or run `npm ci` yourself in src/ui/ on a machine that has npm.)"
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{npm} ci --no-audit --no-fund --prefer-offline` failed in {} ({status}); \
             it needs the npm registry or a warm npm cache",
            dir.display()
        ))
    }
}

/// Gives `file` (written by `npm ci` just now) the modification time of `like`. Cargo compares
/// watched files with the time this script *started*; without this, the next build would see
/// `node_modules/leaflet/package.json` as changed and run the script (and rustc) once more.
fn backdate(file: &Path, like: &Path) {
    let time = std::fs::metadata(like).and_then(|m| m.modified());
    let file = std::fs::File::options().write(true).open(file);
    if let (Ok(time), Ok(file)) = (time, file) {
        let _ = file.set_modified(time);
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The `"version"` of `key` in an npm v3 lock file (`"packages": {"node_modules/x": {…}}`).
/// A plain text scan: the build script has no JSON parser and the lock file format is stable.
fn locked_version(lock: &str, key: &str) -> Option<String> {
    let at = lock.find(&format!("\"{key}\""))?;
    first_version(&lock[at..])
}

/// The first `"version": "…"` value in `text`.
fn first_version(text: &str) -> Option<String> {
    let at = text.find("\"version\"")?;
    let rest = &text[at + "\"version\"".len()..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}
