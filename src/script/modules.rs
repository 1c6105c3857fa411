//! `import "lib/web" as web;`: modules resolve relative to the script's
//! folder and never outside it, not through `..` and not through a symlink.

use std::path::{Component, Path, PathBuf};

use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared as RhaiShared};

use super::session::{Shared, Site, SourceFile};
use super::values::Problem;

pub struct ConfinedResolver {
    /// The script's folder, canonical, for the containment check.
    root: PathBuf,
    /// The same folder as the user named it, for messages and origins.
    shown_root: PathBuf,
    shared: Shared,
}

impl ConfinedResolver {
    pub fn new(root: PathBuf, shown_root: PathBuf, shared: Shared) -> ConfinedResolver {
        ConfinedResolver {
            root,
            shown_root,
            shared,
        }
    }

    fn locate(&self, path: &str) -> Result<(PathBuf, String), Problem> {
        let relative = Path::new(path);
        let escapes = relative.is_absolute()
            || relative.components().any(|c| {
                matches!(
                    c,
                    Component::ParentDir | Component::RootDir | Component::Prefix(_)
                )
            });
        let outside = || {
            Problem::new(format!(
                "cannot import `{path}`: it is outside the script's folder"
            ))
            .hint("modules are imported relative to the script's folder and must stay inside it")
        };
        if escapes || path.is_empty() {
            return Err(outside());
        }
        let file = if relative.extension().is_some() {
            relative.to_path_buf()
        } else {
            relative.with_extension("rhai")
        };
        let full = self.root.join(&file);
        let canonical = full.canonicalize().map_err(|err| {
            Problem::new(format!(
                "cannot import `{path}`: {} ({})",
                self.shown(&file),
                lowercase(&err)
            ))
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(outside());
        }
        Ok((canonical, self.shown(&file)))
    }

    fn shown(&self, file: &Path) -> String {
        self.shown_root.join(file).display().to_string()
    }
}

impl rhai::ModuleResolver for ConfinedResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<RhaiShared<Module>, Box<EvalAltResult>> {
        let site = Site {
            source: source.unwrap_or_default().to_string(),
            position: pos,
        };
        let (file, shown) = self
            .locate(path)
            .map_err(|problem| self.shared.borrow_mut().raise(&site, problem))?;
        let trusted_uid = self.shared.borrow().trusted_uid;
        super::permissions::check(&file, &shown, trusted_uid)
            .map_err(|problem| self.shared.borrow_mut().raise(&site, problem))?;
        let text = std::fs::read_to_string(&file).map_err(|err| {
            let problem = Problem::new(format!("cannot read `{shown}`: {}", lowercase(&err)));
            self.shared.borrow_mut().raise(&site, problem)
        })?;
        self.shared.borrow_mut().files.push(SourceFile {
            id: shown.clone(),
            path: file,
            text: text.clone(),
        });
        let mut ast = engine
            .compile(&text)
            .map_err(|err| EvalAltResult::ErrorInModule(shown.clone(), err.into(), pos))?;
        ast.set_source(shown.as_str());
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|err| EvalAltResult::ErrorInModule(shown.clone(), err, pos))?;
        module.set_id(shown);
        Ok(module.into())
    }
}

/// io errors print as "No such file or directory (os error 2)"; messages
/// here are lowercase and end without the code.
pub fn lowercase(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
