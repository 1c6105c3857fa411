//! `import "lib/web" as web;` (script stage): modules resolve relative to
//! the script's folder and never outside it, not through `..` and not
//! through a symlink; each is read once, checked like the script, and
//! evaluated once however often it is imported. An import of a file whose
//! evaluation is under way is a cycle, named as such.

use std::path::{Component, Path, PathBuf};

use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared as RhaiShared};

use super::files;
use super::permissions;
use super::session::{Shared, Site, SourceFile};
use super::source;
use super::values::Problem;

pub struct ConfinedResolver {
    shared: Shared,
}

impl ConfinedResolver {
    pub fn new(shared: Shared) -> ConfinedResolver {
        ConfinedResolver { shared }
    }

    fn raise(&self, site: &Site, problem: Problem) -> Box<EvalAltResult> {
        self.shared.borrow_mut().raise(site, "import", problem)
    }
}

/// `what` (`import` of `path`, or `address_list` of it) relative to the
/// script's folder: the full path to open and the path as shown.
pub fn locate(
    root: &Path,
    shown_root: &Path,
    path: &str,
    what: &str,
    add_extension: bool,
) -> Result<(PathBuf, String), Problem> {
    let relative = Path::new(path);
    let escapes = relative.is_absolute()
        || relative.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        });
    if escapes || path.is_empty() {
        return Err(outside(what, path));
    }
    let file = if add_extension && relative.extension().is_none() {
        relative.with_extension("rhai")
    } else {
        relative.to_path_buf()
    };
    Ok((
        root.join(&file),
        shown_root.join(&file).display().to_string(),
    ))
}

fn outside(what: &str, path: &str) -> Problem {
    Problem::new(format!(
        "cannot {what} `{path}`: it is outside the script's folder"
    ))
    .hint("files are named relative to the script's folder and must stay inside it")
}

/// Opens a file named by the script: inside the script's folder once
/// symlinks are resolved, and checked like the script itself.
pub fn open_confined(
    shared: &Shared,
    path: &str,
    what: &str,
    add_extension: bool,
) -> Result<files::Opened, Problem> {
    let (root, shown_root, trusted_uid) = {
        let session = shared.borrow();
        (
            session.root.clone(),
            session.shown_root.clone(),
            session.trusted_uid,
        )
    };
    let (full, shown) = locate(&root, &shown_root, path, what, add_extension)?;
    let opened = files::open(&full, &shown).map_err(|mut problem| {
        if let Some(why) = problem
            .message
            .strip_prefix(&format!("cannot read `{shown}`: "))
        {
            problem.message = format!("cannot {what} `{path}`: `{shown}`: {why}");
        }
        problem
    })?;
    if !opened.real.starts_with(&root) {
        return Err(outside(what, path));
    }
    permissions::check(&opened, trusted_uid)?;
    Ok(opened)
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
            source: match source {
                Some(source) => source.to_string(),
                None => self.shared.borrow().entry.clone(),
            },
            position: pos,
        };
        let opened = open_confined(&self.shared, path, "import", true)
            .map_err(|problem| self.raise(&site, problem))?;
        let real = opened.real.clone();
        let shown = opened.shown.clone();
        {
            let session = self.shared.borrow();
            if let Some(start) = session.importing.iter().position(|(r, _)| *r == real) {
                let mut chain: Vec<&str> = session.importing[start..]
                    .iter()
                    .map(|(_, shown)| shown.as_str())
                    .collect();
                chain.push(&shown);
                let problem = Problem::new(format!("import cycle: {}", chain.join(" → ")))
                    .hint("modules cannot import each other in a circle; move what both need into a module of its own");
                drop(session);
                return Err(self.raise(&site, problem));
            }
            if let Some(module) = session.modules.get(&real) {
                return Ok(module.clone());
            }
        }
        let text = opened
            .read_text()
            .map_err(|problem| self.raise(&site, problem))?;
        if let Err(problem) = source::check(&text, &shown) {
            return Err(self.raise(&site, problem));
        }
        {
            let mut session = self.shared.borrow_mut();
            session.files.push(SourceFile {
                id: shown.clone(),
                path: real.clone(),
                text: text.clone(),
            });
            session.syntax = None;
        }
        let mut ast = engine
            .compile(&text)
            .map_err(|err| EvalAltResult::ErrorInModule(shown.clone(), err.into(), pos))?;
        ast.set_source(shown.as_str());
        self.shared
            .borrow_mut()
            .importing
            .push((real.clone(), shown.clone()));
        let evaluated = Module::eval_ast_as_new(Scope::new(), &ast, engine);
        self.shared.borrow_mut().importing.pop();
        let mut module =
            evaluated.map_err(|err| EvalAltResult::ErrorInModule(shown.clone(), err, pos))?;
        module.set_id(shown);
        let module: RhaiShared<Module> = module.into();
        self.shared
            .borrow_mut()
            .modules
            .insert(real, module.clone());
        Ok(module)
    }
}
