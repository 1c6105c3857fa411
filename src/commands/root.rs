//! "must run as root" where that is the cause (command → **error**): run
//! by another user, fwscript cannot read or write the kernel's tables, the
//! state folder in /var/lib or a network namespace, and the tools' own
//! words for it (`Permission denied (you must be root)`, `mount
//! --make-shared /run/netns failed`) do not say what to do.

use crate::error::Error;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `err`, said as a want of root when that is its cause.
pub fn explain(err: Error) -> Error {
    if is_root() || !for_want_of_root(&err) {
        return err;
    }
    if let Error::State(state) = &err {
        if let Some(text) = roots_folder(state) {
            return Error::NeedsRoot(text);
        }
    }
    // The cause's own hint (`chown root …`) is not what to do as another
    // user: root's hint replaces it.
    let text = err.to_string();
    let what: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("= hint:"))
        .collect();
    Error::NeedsRoot(what.join("\n").trim_start_matches("error: ").to_string())
}

/// A state folder that is root's, read by another user: its distrust
/// (`belongs to user id 0, who could plant…`) is not the point.
pub fn roots_folder(err: &crate::state::StateError) -> Option<String> {
    match err {
        crate::state::StateError::Untrusted {
            what, path, why, ..
        } if why.contains("belongs to user id 0") && !is_root() => {
            Some(format!("the state {what} `{}` is root's", path.display()))
        }
        _ => None,
    }
}

/// The words the kernel, the tools and the state folder use when only
/// root may do something. A script error never counts: its text is the
/// user's.
fn for_want_of_root(err: &Error) -> bool {
    if matches!(err, Error::Script(_) | Error::NeedsRoot(_)) {
        return false;
    }
    let text = err.to_string().to_lowercase();
    [
        "permission denied",
        "operation not permitted",
        "you must be root",
        "must be run as root",
        "belongs to user id 0",
        "mount --make-shared",
    ]
    .iter()
    .any(|words| text.contains(words))
}

/// For commands that cannot do anything without root.
pub fn require(what: &str) -> Result<(), Error> {
    match is_root() {
        true => Ok(()),
        false => Err(Error::NeedsRoot(what.to_string())),
    }
}
