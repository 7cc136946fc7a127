//! `[[alerts]]`: the targets alerts and job pings go to, and what makes a table valid.
//!
//! Owns the keys of one target and their validation: exactly one of `webhook` and
//! `command`, a `format` the target's kind can send, the e-mail addresses an `email` target
//! needs, the jobs a `healthchecks` target hears. Must not send anything, nor resolve
//! defaults (`alert::deliver` does, next to the delivery that uses them).

use super::Config;
use super::problems::{KeyPath, Problems};
use crate::alert::{Format, JOBS};
use serde::Deserialize;

/// One `[[alerts]]` table: exactly one of `webhook` and `command`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// URL that receives one POST per alert (or, for `healthchecks`, per job start and end).
    pub webhook: Option<String>,
    /// Shell command that receives each alert on its standard input (the JSON document, or
    /// an e-mail message with `format = "email"`).
    pub command: Option<String>,
    /// What the target gets: `json` (the alert document, the default), `slack`, `ntfy` or
    /// `healthchecks` for a webhook; `json` or `email` for a command. Left out, Slack, ntfy.sh
    /// and Healthchecks.io URLs get their own format.
    pub format: Option<String>,
    /// Lowest level of a state change sent: `warning` (the default) or `critical`.
    /// Recoveries and job failures are always sent.
    pub min_level: Option<String>,
    /// How long one delivery attempt may take (default `10s`).
    pub timeout: Option<String>,
    /// For `format = "email"`: the recipients (`ops@hotel.example`, several separated by
    /// commas).
    pub email_to: Option<String>,
    /// For `format = "email"`: the sender (default `strongroom@HOSTNAME`).
    pub email_from: Option<String>,
    /// For `format = "healthchecks"`: the jobs that ping this URL (default every scheduled
    /// job: backup, verify, check, forget, prune, copy, drill and export).
    pub jobs: Option<Vec<String>>,
}

/// Checks every `[[alerts]]` table, each problem at its key.
pub(super) fn validate(config: &Config, problems: &mut Problems<'_>) {
    for (i, a) in config.alerts.iter().enumerate() {
        let at = KeyPath::of(&["alerts"]).index(i);
        if a.webhook.is_some() == a.command.is_some() {
            problems.at(at.clone(), "needs exactly one of webhook and command");
        }
        let format = match a.format.as_deref() {
            None => None,
            Some(f) => match Format::from_name(f) {
                Some(format) => Some(format),
                None => {
                    problems.at(
                        at.clone().key("format"),
                        format!(
                            "{f:?} is not a format: use \"json\", \"slack\", \"ntfy\" or \"healthchecks\" for a webhook, \"json\" or \"email\" for a command"
                        ),
                    );
                    None
                }
            },
        };
        match (format, a.webhook.is_some()) {
            (Some(Format::Email), true) => problems.at(
                at.clone().key("format"),
                "\"email\" is for a command target (such as command = \"sendmail -t\"), not a webhook",
            ),
            (Some(f @ (Format::Slack | Format::Ntfy | Format::Healthchecks)), false)
                if a.command.is_some() =>
            {
                problems.at(
                    at.clone().key("format"),
                    format!(
                        "{:?} is for a webhook target; a command takes \"json\" or \"email\"",
                        f.name()
                    ),
                )
            }
            _ => {}
        }
        let resolved = a.format_or_default();
        if resolved == Format::Email {
            match a.email_to.as_deref() {
                None => problems.at(
                    at.clone().key("email_to"),
                    "is missing: format = \"email\" needs the recipients, e.g. email_to = \"ops@hotel.example\"",
                ),
                Some(to) => {
                    if let Err(e) = check_addresses(to) {
                        problems.at(at.clone().key("email_to"), e);
                    }
                }
            }
            if let Some(Err(e)) = a.email_from.as_deref().map(check_addresses) {
                problems.at(at.clone().key("email_from"), e);
            }
        } else {
            for (key, v) in [("email_to", &a.email_to), ("email_from", &a.email_from)] {
                if v.is_some() {
                    problems.at(
                        at.clone().key(key),
                        "is only read with format = \"email\": set the format or remove the key",
                    );
                }
            }
        }
        if resolved == Format::Healthchecks {
            if a.min_level.is_some() {
                problems.at(
                    at.clone().key("min_level"),
                    "has no effect on a \"healthchecks\" target, which hears job runs, not state changes: remove it",
                );
            }
            for (j, job) in a.jobs.iter().flatten().enumerate() {
                if !JOBS.contains(&job.as_str()) {
                    problems.at(
                        at.clone().key("jobs").index(j),
                        format!("{job:?} is not a job: use {}", JOBS.join(", ")),
                    );
                }
            }
        } else if a.jobs.is_some() {
            problems.at(
                at.clone().key("jobs"),
                "is only read with format = \"healthchecks\": set the format or remove the key",
            );
        }
        if let Some(l) = a
            .min_level
            .as_deref()
            .filter(|l| !["warning", "critical"].contains(l))
        {
            problems.at(
                at.clone().key("min_level"),
                format!("{l:?} is neither \"warning\" nor \"critical\""),
            );
        }
        if let Some(t) = &a.timeout
            && let Err(e) = crate::parse_duration(t)
        {
            problems.at(at.clone().key("timeout"), e);
        }
    }
}

/// Whether `list` is one or more plain addresses (`ops@hotel.example`, `Ops <ops@x.example>`),
/// separated by commas: printable ASCII only, so nothing can end the header it goes into.
fn check_addresses(list: &str) -> Result<(), String> {
    if let Some(c) = list.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "{list:?} holds {c:?}: write addresses in plain ASCII, without line breaks"
        ));
    }
    for one in list.split(',') {
        let one = one.trim();
        let addr = match (one.rfind('<'), one.ends_with('>')) {
            (Some(i), true) => &one[i + 1..one.len() - 1],
            _ => one,
        };
        match addr.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.is_empty()
                    && !addr.contains(char::is_whitespace) => {}
            _ => {
                return Err(format!(
                    "{one:?} is not an e-mail address: write user@domain, several separated by commas"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn problems(table: &str) -> String {
        let text = format!("[[alerts]]\n{table}");
        match Config::parse(&text, Path::new("c.toml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn each_format_goes_with_its_kind_of_target() {
        for ok in [
            "webhook = \"https://ntfy.example/t\"\nformat = \"ntfy\"\n",
            "webhook = \"https://hc.example/ping/x\"\nformat = \"healthchecks\"\njobs = [\"backup\", \"wal push\"]\n",
            "webhook = \"https://x.example/h\"\nformat = \"slack\"\n",
            "command = \"sendmail -t\"\nformat = \"email\"\nemail_to = \"ops@hotel.example, Ana <ana@hotel.example>\"\nemail_from = \"backup@db1.hotel.example\"\n",
            "command = \"cat\"\nformat = \"json\"\n",
            // Auto-chosen: a Healthchecks URL takes `jobs`.
            "webhook = \"https://hc-ping.com/uuid\"\njobs = [\"verify\"]\n",
        ] {
            assert_eq!(problems(ok), "", "{ok}");
        }
        for (bad, want) in [
            (
                "webhook = \"http://x\"\nformat = \"teams\"\n",
                "alerts[0].format: \"teams\" is not a format: use \"json\", \"slack\", \"ntfy\" or \"healthchecks\" for a webhook, \"json\" or \"email\" for a command",
            ),
            (
                "webhook = \"http://x\"\nformat = \"email\"\nemail_to = \"a@b\"\n",
                "alerts[0].format: \"email\" is for a command target",
            ),
            (
                "command = \"cat\"\nformat = \"ntfy\"\n",
                "alerts[0].format: \"ntfy\" is for a webhook target; a command takes \"json\" or \"email\"",
            ),
            (
                "command = \"cat\"\nformat = \"healthchecks\"\n",
                "alerts[0].format: \"healthchecks\" is for a webhook target",
            ),
            (
                "command = \"sendmail -t\"\nformat = \"email\"\n",
                "alerts[0].email_to: is missing: format = \"email\" needs the recipients",
            ),
            (
                "command = \"sendmail -t\"\nformat = \"email\"\nemail_to = \"ops\"\n",
                "alerts[0].email_to: \"ops\" is not an e-mail address",
            ),
            (
                "command = \"sendmail -t\"\nformat = \"email\"\nemail_to = \"a@b\\nBcc: x@y\"\n",
                "alerts[0].email_to: \"a@b\\nBcc: x@y\" holds '\\n': write addresses in plain ASCII",
            ),
            (
                "command = \"cat\"\nemail_to = \"ops@hotel.example\"\n",
                "alerts[0].email_to: is only read with format = \"email\"",
            ),
            (
                "webhook = \"http://x\"\njobs = [\"backup\"]\n",
                "alerts[0].jobs: is only read with format = \"healthchecks\"",
            ),
            (
                "webhook = \"http://x\"\nformat = \"healthchecks\"\njobs = [\"backups\"]\n",
                "alerts[0].jobs[0]: \"backups\" is not a job: use backup, verify,",
            ),
            (
                "webhook = \"http://x\"\nformat = \"healthchecks\"\nmin_level = \"critical\"\n",
                "alerts[0].min_level: has no effect on a \"healthchecks\" target",
            ),
        ] {
            let e = problems(bad);
            assert!(e.contains(want), "{bad}\n{e}\ndoes not say\n{want}");
            assert_eq!(e.lines().count(), 1, "one problem, one line: {e}");
        }
    }
}
