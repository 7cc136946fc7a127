//! How the text after a command's options reads: examples and other indented lines kept
//! whole, prose wrapped to the terminal. Used by `--help` and by the man page.
//!
//! Why not clap's own wrapping: with `wrap_help`, clap re-wraps the whole `after_help` text
//! to the terminal's width (the width of stdout, stderr or stdin when one is a terminal, else
//! `COLUMNS`, else 100; at most [`MAX_WIDTH`]), breaking an example command in the middle,
//! so a copied line no longer runs, while prose keeps the hard line breaks it was written
//! with and comes out ragged. Here the `after_help` strings of `args` are read as blocks
//! ([`blocks`]): a line that starts with a space is *verbatim* (an example, a config line)
//! and is never broken; other lines are prose, joined into paragraphs (a blank line, or a
//! line that starts with a label such as `Environment:`, starts a new one) and wrapped at
//! the width clap uses for the options. The result goes into the command's help template
//! as literal text, which clap prints as it is.
//!
//! Owns that reading and the terminal rendering; the roff rendering is `commands::man`'s.
//! Must not hold help text itself: that stays in `args`.

use clap::Command;

/// The widest help text, whatever the terminal: longer lines are hard to read.
pub const MAX_WIDTH: usize = 100;

/// One piece of a command's after-help text.
#[derive(Debug, PartialEq, Eq)]
pub enum Block {
    /// A paragraph of prose, on one line: fill it to the width at hand.
    Prose(String),
    /// Lines shown exactly as written, each whole (examples, config lines), indentation
    /// included.
    Verbatim(Vec<String>),
}

/// A block and whether a blank line separates it from the one before.
#[derive(Debug, PartialEq, Eq)]
pub struct Placed {
    /// Whether a blank line comes before it.
    pub gap_before: bool,
    /// The block.
    pub block: Block,
}

/// Reads after-help text as blocks (see the module's header for the rules).
pub fn blocks(text: &str) -> Vec<Placed> {
    let mut out: Vec<Placed> = Vec::new();
    let mut gap = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            gap = !out.is_empty();
            continue;
        }
        let verbatim = line.starts_with([' ', '\t']);
        match out.last_mut() {
            Some(Placed {
                block: Block::Verbatim(lines),
                ..
            }) if verbatim && !gap => lines.push(line.trim_end().to_owned()),
            Some(Placed {
                block: Block::Prose(p),
                ..
            }) if !verbatim && !gap && !starts_with_label(line) => {
                p.push(' ');
                p.push_str(line.trim());
            }
            _ => out.push(Placed {
                gap_before: gap,
                block: if verbatim {
                    Block::Verbatim(vec![line.trim_end().to_owned()])
                } else {
                    Block::Prose(line.trim().to_owned())
                },
            }),
        }
        gap = false;
    }
    out
}

/// Whether a prose line opens with a label (`Environment: …`, `Exit codes: …`, `PostgreSQL
/// logical: …`): one to three words before a colon, the first capitalised.
fn starts_with_label(line: &str) -> bool {
    let Some((head, _)) = line.split_once(':') else {
        return false;
    };
    head.starts_with(|c: char| c.is_ascii_uppercase())
        && head.chars().all(|c| c.is_alphabetic() || c == ' ')
        && head.split(' ').count() <= 3
}

/// The text as `--help` shows it at `width` columns.
pub fn for_terminal(text: &str, width: usize) -> String {
    let mut out = String::new();
    for (i, placed) in blocks(text).iter().enumerate() {
        if i > 0 {
            out.push('\n');
            if placed.gap_before {
                out.push('\n');
            }
        }
        match &placed.block {
            Block::Prose(p) => out.push_str(&fill(p, width)),
            Block::Verbatim(lines) => out.push_str(&lines.join("\n")),
        }
    }
    out
}

/// Greedy filling on spaces, as clap fills the options' descriptions: no line longer than
/// `width` unless one word is.
fn fill(paragraph: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
        let len = word.chars().count();
        if line_len > 0 && line_len + 1 + len > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += len;
    }
    out
}

/// The width clap lays `--help` out at: the terminal's (stdout, stderr or stdin, the first
/// that is one), else `COLUMNS`, else 100; at most [`MAX_WIDTH`].
fn width() -> usize {
    let current = terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(100);
    current.min(MAX_WIDTH)
}

/// clap's default help template without `{after-help}`, which is appended as literal text.
const TEMPLATE_HEAD: &str =
    "{before-help}{about-with-newline}\n{usage-heading} {usage}\n\n{all-args}";

/// `cmd` (and every subcommand) with its after-help laid out for this terminal.
pub fn apply(cmd: Command) -> Command {
    lay_out(cmd.max_term_width(MAX_WIDTH), width())
}

fn lay_out(cmd: Command, width: usize) -> Command {
    let cmd = match cmd.get_after_help() {
        // A template's literal text is printed as it is, except `{tag}`s: none of our
        // texts holds one, and the `--help` tests see every example line whole.
        Some(text) => {
            let text = for_terminal(&text.to_string(), width);
            cmd.help_template(format!("{TEMPLATE_HEAD}\n\n{text}"))
        }
        None => cmd,
    };
    cmd.mut_subcommands(|sub| lay_out(sub, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_stay_whole_and_prose_fills() {
        let text = "Examples:\n  strongroom restore latest --data-dir /srv/pg/restored --time '2026-12-01 22:59:00' --start\n  strongroom list   # aligned\n\nPhysical: the snapshot is written beside DIR,\nglobal/pg_control last.\nEnvironment: STRONGROOM_REPO.";
        let b = blocks(text);
        assert_eq!(b.len(), 4, "{b:?}");
        assert_eq!(b[0].block, Block::Prose("Examples:".into()));
        assert!(!b[1].gap_before);
        assert_eq!(
            b[2].block,
            Block::Prose(
                "Physical: the snapshot is written beside DIR, global/pg_control last.".into()
            )
        );
        assert!(b[2].gap_before);
        assert_eq!(
            b[3].block,
            Block::Prose("Environment: STRONGROOM_REPO.".into())
        );
        let shown = for_terminal(text, 30);
        assert!(shown.contains(
            "\n  strongroom restore latest --data-dir /srv/pg/restored --time '2026-12-01 22:59:00' --start\n"
        ));
        assert!(shown.contains("\n  strongroom list   # aligned\n\nPhysical:"));
        for line in shown.lines().filter(|l| !l.starts_with(' ')) {
            assert!(line.chars().count() <= 30, "{line:?}");
        }
    }

    #[test]
    fn labels_are_short_capitalised_heads() {
        assert!(starts_with_label("Exit codes: 0 success"));
        assert!(starts_with_label("PostgreSQL logical: the snapshot"));
        assert!(!starts_with_label("snapshot that ends: before"));
        assert!(!starts_with_label(
            "STRONGROOM_PASSWORD_FILE, not a password: a"
        ));
        assert!(!starts_with_label("Example (crontab; write then rename):"));
    }
}
