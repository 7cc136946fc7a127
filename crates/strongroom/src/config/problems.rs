//! Every problem of one configuration file, found in one run, each naming its key and line.
//!
//! Owns reading the file into a document that remembers where each key is, collecting the
//! problems (serde's, by setting the refused key aside and deserializing again; the
//! validators', through [`Problems::at`]) and the one error that reports them all, in the
//! file's order. A TOML syntax error stops at once: nothing after it can be read. Must not
//! decide what is valid: the keys and their rules are `config`'s.

use crate::error::Error;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// At most this many keys are set aside before the rest of the file is left unread.
const MAX_SET_ASIDE: usize = 200;

/// Where a key is in the file: `sources.prod.url`, `alerts[1].format` (arrays count from 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct KeyPath(Vec<Step>);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Step {
    Key(String),
    Index(usize),
}

impl KeyPath {
    /// The path through these keys.
    pub(super) fn of(keys: &[&str]) -> Self {
        KeyPath(keys.iter().map(|k| Step::Key(k.to_string())).collect())
    }

    /// This path, one key deeper.
    pub(super) fn key(mut self, key: &str) -> Self {
        self.0.push(Step::Key(key.to_string()));
        self
    }

    /// This path, at item `i` of its array.
    pub(super) fn index(mut self, i: usize) -> Self {
        self.0.push(Step::Index(i));
        self
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Index(n) => write!(f, "[{n}]")?,
                Step::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One problem: where, and what is wrong.
struct Problem {
    at: Option<(usize, usize)>,
    path: KeyPath,
    message: String,
}

/// The problems found so far in one file, and the document they point into.
pub(super) struct Problems<'a> {
    origin: &'a Path,
    text: &'a str,
    doc: Spanned<DeTable<'a>>,
    found: Vec<Problem>,
}

impl<'a> Problems<'a> {
    /// Reads `text` (from `origin`, named in every problem); a TOML syntax error is the one
    /// problem reported, since nothing after it can be read.
    pub(super) fn parse(text: &'a str, origin: &'a Path) -> Result<Self, Error> {
        let doc = DeTable::parse(text).map_err(|e| {
            let message = e.message().trim_end_matches('\n');
            let at = e.span().map(|s| line_col(text, s.start));
            Error::Config(line(origin, at, &KeyPath::default(), message))
        })?;
        Ok(Problems {
            origin,
            text,
            doc,
            found: Vec::new(),
        })
    }

    /// Deserializes the document, noting each key serde refuses (an unknown key, a value
    /// of the wrong type) and trying again without it, so one run finds them all. `None`
    /// when even that fails; the problems say why.
    pub(super) fn deserialize<T: DeserializeOwned>(&mut self) -> Option<T> {
        let mut doc = self.doc.clone();
        // Keys set aside: their table then reports them missing, which is said already.
        let mut set_aside: HashSet<KeyPath> = HashSet::new();
        for _ in 0..MAX_SET_ASIDE {
            let e = match T::deserialize(toml::de::Deserializer::from(doc.clone())) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let message = e.message().trim_end_matches('\n').to_string();
            let Some(span) = e.span() else {
                self.found.push(Problem {
                    at: None,
                    path: KeyPath::default(),
                    message,
                });
                return None;
            };
            let mut path = KeyPath::default();
            locate(doc.get_ref(), &span, &mut path);
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'));
            let said = missing.is_some_and(|k| set_aside.contains(&path.clone().key(k)));
            if !said {
                self.found.push(Problem {
                    at: Some(line_col(self.text, span.start)),
                    path: path.clone(),
                    message,
                });
            }
            // An array item cannot be taken out alone: the whole array goes.
            while matches!(path.0.last(), Some(Step::Index(_))) {
                path.0.pop();
            }
            if !set_aside_key(doc.get_mut(), &path.0) {
                return None;
            }
            set_aside.insert(path);
        }
        self.found.push(Problem {
            at: None,
            path: KeyPath::default(),
            message: format!("more than {MAX_SET_ASIDE} problems; the rest was not read"),
        });
        None
    }

    /// Notes that the key at `path` is wrong, as `message` says.
    pub(super) fn at(&mut self, path: KeyPath, message: impl Into<String>) {
        let at = find(self.doc.get_ref(), &path.0).map(|s| line_col(self.text, s.start));
        self.found.push(Problem {
            at,
            path,
            message: message.into(),
        });
    }

    /// `value`, or one error naming every problem, one line each, in the file's order.
    pub(super) fn finish<T>(mut self, value: Option<T>) -> Result<T, Error> {
        self.found
            .sort_by_key(|p| (p.at.is_none(), p.at.unwrap_or_default()));
        let lines: Vec<String> = self
            .found
            .iter()
            .map(|p| line(self.origin, p.at, &p.path, &p.message))
            .collect();
        match (lines.as_slice(), value) {
            ([], Some(v)) => Ok(v),
            ([], None) => Err(Error::Config(format!(
                "{}: cannot be read as a strongroom configuration",
                self.origin.display()
            ))),
            ([one], _) => Err(Error::Config(one.clone())),
            (many, _) => Err(Error::Config(format!(
                "{} has {} problems:\n  {}",
                self.origin.display(),
                many.len(),
                many.join("\n  ")
            ))),
        }
    }
}

/// `FILE:LINE:COLUMN: PATH: MESSAGE`, leaving out what is not known.
fn line(origin: &Path, at: Option<(usize, usize)>, path: &KeyPath, message: &str) -> String {
    let place = match at {
        Some((l, c)) => format!("{}:{l}:{c}", origin.display()),
        None => origin.display().to_string(),
    };
    if path.0.is_empty() {
        format!("{place}: {message}")
    } else {
        format!("{place}: {path}: {message}")
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

/// Extends `path` to the deepest key or array item whose key or value covers `span`. A
/// table's span is its header only, so its keys are searched whatever it covers.
fn locate(table: &DeTable<'_>, span: &Range<usize>, path: &mut KeyPath) -> bool {
    for (k, v) in table.iter() {
        path.0.push(Step::Key(k.get_ref().to_string()));
        if locate_value(v, span, path) || contains(&k.span(), span) || contains(&v.span(), span) {
            return true;
        }
        path.0.pop();
    }
    false
}

fn locate_value(v: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut KeyPath) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => locate(t, span, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.0.push(Step::Index(i));
                if locate_value(item, span, path) || contains(&item.span(), span) {
                    return true;
                }
                path.0.pop();
            }
            false
        }
        _ => false,
    }
}

/// Takes the key at `steps` out of the document; false when there is none to take.
fn set_aside_key(table: &mut DeTable<'_>, steps: &[Step]) -> bool {
    match steps {
        [Step::Key(k)] => table.remove(k.as_str()).is_some(),
        [Step::Key(k), rest @ ..] => match table.get_mut(k.as_str()) {
            Some(v) => set_aside_in(v.get_mut(), rest),
            None => false,
        },
        _ => false,
    }
}

fn set_aside_in(v: &mut DeValue<'_>, steps: &[Step]) -> bool {
    match (v, steps) {
        (DeValue::Table(t), _) => set_aside_key(t, steps),
        (DeValue::Array(items), [Step::Index(i), rest @ ..]) => match items.get_mut(*i) {
            Some(item) => set_aside_in(item.get_mut(), rest),
            None => false,
        },
        _ => false,
    }
}

/// Where the key (or array item) at `steps` is written.
fn find(table: &DeTable<'_>, steps: &[Step]) -> Option<Range<usize>> {
    let (Step::Key(k), rest) = steps.split_first()? else {
        return None;
    };
    let (key, value) = table.get_key_value(k.as_str())?;
    if rest.is_empty() {
        return Some(key.span());
    }
    find_in(value, rest).or(Some(key.span()))
}

fn find_in(v: &Spanned<DeValue<'_>>, steps: &[Step]) -> Option<Range<usize>> {
    match (v.get_ref(), steps.split_first()?) {
        (DeValue::Table(t), _) => find(t, steps),
        (DeValue::Array(items), (Step::Index(i), rest)) => {
            let item = items.get(*i)?;
            if rest.is_empty() {
                Some(item.span())
            } else {
                find_in(item, rest).or(Some(item.span()))
            }
        }
        _ => None,
    }
}

/// The 1-based line and column of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}
