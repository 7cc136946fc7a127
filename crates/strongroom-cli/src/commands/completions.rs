//! `strongroom completions SHELL`: a completion script, generated from the clap definitions
//! in `args`, so it always matches the commands and flags of this build; and the hidden
//! `strongroom source-names` those scripts call back to offer configured source names.
//!
//! A static script cannot know the names in `strongroom.toml`, and clap_complete's dynamic
//! completion is not available in the version this workspace builds with. So each script
//! clap_complete writes gets a small shell function that runs `strongroom source-names`
//! (passing on a `--config FILE` typed on the line) wherever a source is expected: the value
//! of every `--source`, and the SOURCE of backup and replicate. `source-names` reads the config found the usual
//! way (`--config`, `STRONGROOM_CONFIG`, `./strongroom.toml`) through the library, with its
//! ownership checks, and prints nothing at all when that fails: a completion must not spill
//! errors over the line being typed.

use crate::args::{Cli, Global};
use crate::context::config_path;
use crate::output::stdout_error;
use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;
use strongroom::config::Config;

/// Prints the completion script for `shell` on stdout.
pub fn run(shell: Shell) -> Result<()> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "strongroom", &mut script);
    let script = String::from_utf8(script)?;
    cmd.build();
    let places = SourcePlaces::of(&cmd);
    let script = match shell {
        Shell::Bash => bash(&script, &places),
        Shell::Zsh => zsh(&script),
        Shell::Fish => fish(&script, &places),
        _ => script,
    };
    std::io::stdout()
        .write_all(script.as_bytes())
        .map_err(stdout_error)
}

/// Prints the names of the configured sources, one per line; nothing when there is no
/// config or it cannot be read.
pub fn source_names(global: &Global) -> Result<()> {
    let config = config_path(global).and_then(|p| Config::load(&p).ok());
    let mut out = String::new();
    for name in config.iter().flat_map(|c| c.sources.keys()) {
        out.push_str(name);
        out.push('\n');
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(stdout_error)
}

/// Where a source name is typed, from the clap definitions.
struct SourcePlaces {
    /// Commands with a `--source` flag.
    flag: Vec<String>,
    /// Commands whose positional SOURCE is a source, with the options of each that take a
    /// value (their value is not the positional).
    positional: Vec<(String, Vec<String>)>,
    /// Options before the command that take a value.
    global_values: Vec<String>,
}

impl SourcePlaces {
    fn of(cmd: &clap::Command) -> Self {
        let takes_value = |a: &clap::Arg| !a.is_positional() && a.get_action().takes_values();
        let spellings = |a: &clap::Arg| {
            let longs = a.get_long().map(|l| format!("--{l}"));
            let shorts = a.get_short().map(|s| format!("-{s}"));
            longs.into_iter().chain(shorts).collect::<Vec<_>>()
        };
        let mut places = SourcePlaces {
            flag: Vec::new(),
            positional: Vec::new(),
            global_values: cmd
                .get_arguments()
                .filter(|a| takes_value(a))
                .flat_map(spellings)
                .collect(),
        };
        for sub in cmd.get_subcommands() {
            let name = sub.get_name().to_string();
            if sub.get_arguments().any(|a| a.get_long() == Some("source")) {
                places.flag.push(name.clone());
            }
            if sub
                .get_positionals()
                .any(|a| a.get_id().as_str() == "source")
            {
                let values = sub
                    .get_arguments()
                    .filter(|a| takes_value(a))
                    .flat_map(spellings)
                    .collect();
                places.positional.push((name, values));
            }
        }
        places
    }
}

/// clap's bash script, registered through a function that completes source names first.
fn bash(script: &str, places: &SourcePlaces) -> String {
    let positional_cases: String = places
        .positional
        .iter()
        .map(|(cmd, values)| {
            format!(
                "                    {cmd}) values=\" {} \" ;;\n",
                values.join(" ")
            )
        })
        .collect();
    let hook = format!(
        r#"
# Configured source names (`strongroom source-names`, which reads the config given by
# --config on the line, else STRONGROOM_CONFIG or ./strongroom.toml), for --source and for
# a command's SOURCE.
_strongroom_source_names() {{
    local i file config=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --config)
                file="${{COMP_WORDS[i+1]}}"
                [[ "$file" == "=" ]] && file="${{COMP_WORDS[i+2]}}"
                config=(--config "${{file/#\~/$HOME}}")
                ;;
        esac
    done
    "${{COMP_WORDS[0]}}" "${{config[@]}}" source-names 2>/dev/null
}}

# Whether the word being completed is a command's SOURCE (given no value yet).
_strongroom_wants_source() {{
    local i word command="" skip="" values=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if [[ -n "$skip" ]]; then
            [[ "$word" == "=" ]] || skip=""
            continue
        fi
        if [[ -z "$command" ]]; then
            case " {globals} " in
                *" $word "*) skip=1 ;;
                *) [[ "$word" == -* ]] || command="$word" ;;
            esac
            if [[ -n "$command" ]]; then
                case "$command" in
{positional_cases}                    *) return 1 ;;
                esac
            fi
        elif [[ "$values" == *" $word "* ]]; then
            skip=1
        elif [[ "$word" != -* ]]; then
            return 1
        fi
    done
    [[ -n "$command" && -z "$skip" ]]
}}

_strongroom_with_sources() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    # `--source=…`: bash splits the word at '='.
    if [[ "$cur" == "=" ]]; then
        cur=""
    elif [[ "$prev" == "=" ]]; then
        prev="${{COMP_WORDS[COMP_CWORD-2]}}"
    fi
    if [[ "$prev" == --source ]] || {{ [[ "$cur" != -* ]] && _strongroom_wants_source; }}; then
        COMPREPLY=( $(compgen -W "$(_strongroom_source_names)" -- "$cur") )
        return 0
    fi
    _strongroom "$@"
}}
"#,
        globals = places.global_values.join(" "),
    );
    let registered = script.replace(
        "complete -F _strongroom ",
        "complete -F _strongroom_with_sources ",
    );
    // The hook goes before the registration at the end.
    match registered.rfind("\nif [[ \"${BASH_VERSINFO[0]}\"") {
        Some(at) => format!("{}{hook}{}", &registered[..at + 1], &registered[at + 1..]),
        None => format!("{registered}{hook}"),
    }
}

/// clap's zsh script, with source names as the values of `--source` and of SOURCE.
fn zsh(script: &str) -> String {
    let hook = r#"(( $+functions[_strongroom_source_names] )) ||
_strongroom_source_names() {
    # Configured source names (`strongroom source-names`, which reads the config given by
    # --config on the line, else STRONGROOM_CONFIG or ./strongroom.toml).
    local -a names config tokens
    local i file
    tokens=(${(z)BUFFER})
    for (( i = 1; i < $#tokens; i++ )); do
        if [[ $tokens[i] == --config ]]; then
            file=${(Q)tokens[i+1]}
            config=(--config ${file/#\~/$HOME})
        elif [[ $tokens[i] == --config=* ]]; then
            file=${(Q)tokens[i]#--config=}
            config=(--config ${file/#\~/$HOME})
        fi
    done
    names=(${(f)"$(${service:-strongroom} $config source-names 2>/dev/null)"})
    compadd -a names
}

"#;
    let mut out = String::new();
    for line in script.split_inclusive('\n') {
        let spec = line.trim_start();
        if spec.starts_with("'--source=")
            || spec.starts_with("'*--source=")
            || spec.starts_with("'::source -- ")
            || spec.starts_with("':source -- ")
        {
            out.push_str(&line.replacen(":_default'", ":_strongroom_source_names'", 1));
        } else {
            if line.starts_with("if [ \"$funcstack[1]\" = \"_strongroom\" ]") {
                out.push_str(hook);
            }
            out.push_str(line);
        }
    }
    out
}

/// clap's fish script, plus source names for `--source` and SOURCE.
fn fish(script: &str, places: &SourcePlaces) -> String {
    let positional: Vec<&str> = places.positional.iter().map(|(c, _)| c.as_str()).collect();
    format!(
        r#"{script}
# Configured source names (`strongroom source-names`, which reads the config given by
# --config on the line, else STRONGROOM_CONFIG or ./strongroom.toml).
function __fish_strongroom_source_names
    set -l words (commandline -opc)
    set -l config
    for i in (seq 2 (count $words))
        switch $words[$i]
            case --config
                if test $i -lt (count $words)
                    set config --config $words[(math $i + 1)]
                end
            case '--config=*'
                set config $words[$i]
        end
    end
    $words[1] $config source-names 2>/dev/null
end
complete -c strongroom -n "__fish_strongroom_using_subcommand {flag}" -l source -x -a "(__fish_strongroom_source_names)"
complete -c strongroom -n "__fish_strongroom_using_subcommand {positional}" -f -a "(__fish_strongroom_source_names)"
"#,
        flag = places.flag.join(" "),
        positional = positional.join(" "),
    )
}
