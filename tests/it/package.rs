//! The Debian package's contents, without building it: the assets of
//! `[package.metadata.deb]` in Cargo.toml, where cargo-deb installs them,
//! are the files the README's "Debian package" section lists, and it
//! depends on or recommends the tools fwscript runs. CI also
//! builds the package (`.ci/package --check`) and compares its real file
//! list with the same section.

use std::collections::BTreeSet;
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `["source", "target", "mode"]` lines of the `assets` array.
fn assets() -> Vec<(String, String)> {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let section = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("a [package.metadata.deb] section");
    let list = section.split("assets = [").nth(1).expect("assets");
    let list = &list[..list.find("\n]").expect("the end of assets")];
    list.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .map(|line| {
            let fields: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
            assert_eq!(fields.len(), 3, "{line}");
            (fields[0].to_string(), fields[1].to_string())
        })
        .collect()
}

/// Where cargo-deb puts each asset: into a folder target by file name,
/// globs expanded, manual pages gzipped; plus its own copyright file.
fn installed() -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for (source, target) in assets() {
        let sources: Vec<String> = match source.split_once('*') {
            Some((folder, suffix)) => std::fs::read_dir(repo().join(folder))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(suffix))
                .map(|name| format!("{folder}{name}"))
                .collect(),
            None => vec![source.clone()],
        };
        assert!(!sources.is_empty(), "{source} matches nothing");
        for source in sources {
            let name = Path::new(&source)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut path = match target.ends_with('/') {
                true => format!("/{target}{name}"),
                false => format!("/{target}"),
            };
            if path.starts_with("/usr/share/man/") {
                path.push_str(".gz");
            }
            files.insert(path);
        }
    }
    files.insert("/usr/share/doc/fwscript/copyright".to_string());
    files
}

fn promised() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("<!-- package files -->")
        .expect("the README's list");
    let end = readme
        .find("<!-- end of package files -->")
        .expect("its end");
    readme[start..end]
        .lines()
        .filter(|l| l.starts_with('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_package_holds_what_the_readme_lists() {
    let installed = installed();
    let promised = promised();
    assert_eq!(
        installed, promised,
        "Cargo.toml's [package.metadata.deb] assets and the README's list differ"
    );
    for needed in [
        "/usr/bin/fwscript",
        "/lib/systemd/system/fwscript-watch.service",
        "/lib/systemd/system/fwscript-apply.service",
        "/usr/share/man/man1/fwscript.1.gz",
        "/usr/share/doc/fwscript/examples/tutorial.rhai",
    ] {
        assert!(installed.contains(needed), "{needed}");
    }
    // Every example ships, and every doc.
    for folder in ["scripts", "docs"] {
        for entry in std::fs::read_dir(repo().join(folder)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".rhai") || name.ends_with(".md") {
                assert!(
                    installed.iter().any(|f| f.ends_with(&format!("/{name}"))),
                    "{folder}/{name} is not in the package"
                );
            }
        }
    }
}

/// `key = "…"` of `[package.metadata.deb]`.
fn deb_field(key: &str) -> Option<String> {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let section = manifest.split("[package.metadata.deb]").nth(1)?;
    let section = section.split("\n[").next()?;
    section.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

#[test]
fn the_package_needs_the_tools_it_runs() {
    let depends = deb_field("depends").expect("depends");
    for tool in ["iptables", "iproute2"] {
        assert!(depends.split(", ").any(|d| d == tool), "{depends}");
    }
    // A script with sets fails without ipset, with a clear error: so a
    // recommend, which apt installs by default, not a hard dependency.
    let recommends = deb_field("recommends").unwrap_or_default();
    assert!(
        recommends.split(", ").any(|d| d == "ipset"),
        "the package should recommend `ipset`: {recommends:?}"
    );
}

#[test]
fn the_release_build_is_stripped() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let release = manifest
        .split("[profile.release]")
        .nth(1)
        .expect("a release profile")
        .split("\n[")
        .next()
        .unwrap();
    assert!(release.contains("strip = true"), "{release}");
    assert!(release.contains("debug = false"), "{release}");
}
