//! Every command and subcommand's `--help` shows an example, as the project promises.

use clap::CommandFactory;

fn walk(cmd: &mut clap::Command, path: &str, missing: &mut Vec<String>) {
    // clap's generated `help` subcommands only print the others' help
    if cmd.get_name() == "help" {
        return;
    }
    let name = if path.is_empty() { cmd.get_name().to_string() } else { format!("{path} {}", cmd.get_name()) };
    let help = cmd.render_long_help().to_string();
    if !help.contains("Example") {
        missing.push(name.clone());
    }
    for sub in cmd.get_subcommands_mut() {
        walk(sub, &name, missing);
    }
}

#[test]
fn every_command_has_an_example() {
    let mut cmd = ctl::Cli::command();
    cmd.build();
    let mut missing = Vec::new();
    for sub in cmd.get_subcommands_mut() {
        walk(sub, "ctl", &mut missing);
    }
    assert!(missing.is_empty(), "commands whose --help has no example: {missing:?}");
}
