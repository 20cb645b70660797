//! nftables tables applied atomically through the `nft` command.
//!
//! Each owner (a node agent, the service proxy, `ctl run` networks) keeps whole tables of its
//! own and replaces a table in one transaction: `add table` (so the delete cannot fail), `delete
//! table`, then the new table, all in one `nft -f -` script. Readers of the ruleset never see a
//! half-applied table. The `nft` command is used rather than a netlink nftables library because
//! its text syntax is what people debug with, and the script we send is what `nft list table`
//! shows back.
//!
//! An owner whose table carries live traffic (the service proxy) can instead change it in
//! place with [`apply_script`]: flushing and refilling chains and maps inside one transaction
//! keeps the base chains' hooks registered throughout, where replacing the table unregisters
//! and registers them again.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("invalid nftables {what} {value:?}: use letters, digits, '-' and '_' only")]
    Name { what: &'static str, value: String },
    #[error("cannot run nft for table {table}: {source}: install nftables (the nft command)")]
    Spawn { table: String, source: std::io::Error },
    #[error("nft refused table {table}: {stderr}")]
    Failed { table: String, stderr: String },
}

/// Replaces table `family name` with one whose contents are `body` (chains, sets, maps, in
/// nft's syntax, without the surrounding `table ... { }`), atomically.
pub async fn apply_table(family: &str, name: &str, body: &str) -> Result<(), NftError> {
    // the names are checked by apply_script before nft sees the script
    apply_script(family, name, &table_script(family, name, body)).await
}

/// Runs an nft script (commands such as `add element`, `flush chain`) for table `family name`
/// in one transaction: all of it applies or none of it does.
pub async fn apply_script(family: &str, name: &str, script: &str) -> Result<(), NftError> {
    check_name("family", family)?;
    check_name("table", name)?;
    exec(&format!("{family} {name}"), &["-f", "-"], Some(script)).await.map(drop)
}

/// The names of the chains in `nft list table` output, unquoted.
pub fn chain_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("chain ")?;
            let name = rest.strip_suffix('{')?.trim();
            Some(name.trim_matches('"').to_string())
        })
        .collect()
}

/// Deletes table `family name`; returns whether it existed.
pub async fn delete_table(family: &str, name: &str) -> Result<bool, NftError> {
    check_name("family", family)?;
    check_name("table", name)?;
    let table = format!("{family} {name}");
    // Adding first makes the delete succeed whether or not the table was there, in one
    // transaction; existence is asked beforehand only to answer the caller.
    let existed = list_tables().await?.iter().any(|(f, n)| f == family && n == name);
    let script = format!("add table {family} {name}\ndelete table {family} {name}\n");
    exec(&table, &["-f", "-"], Some(&script)).await?;
    Ok(existed)
}

/// Every table in the current network namespace, as (family, name).
pub async fn list_tables() -> Result<Vec<(String, String)>, NftError> {
    let out = exec("tables", &["list", "tables"], None).await?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("table"), Some(family), Some(name)) => Some((family.to_string(), name.to_string())),
                _ => None,
            }
        })
        .collect())
}

/// The rules of table `family name` as `nft list table` prints them (for tests and debugging).
pub async fn list_table(family: &str, name: &str) -> Result<String, NftError> {
    check_name("family", family)?;
    check_name("table", name)?;
    exec(&format!("{family} {name}"), &["list", "table", family, name], None).await
}

/// The script `apply_table` sends: pure, so its shape is testable without nft.
pub fn table_script(family: &str, name: &str, body: &str) -> String {
    format!("add table {family} {name}\ndelete table {family} {name}\ntable {family} {name} {{\n{body}\n}}\n")
}

fn check_name(what: &'static str, value: &str) -> Result<(), NftError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && value.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if ok { Ok(()) } else { Err(NftError::Name { what, value: value.to_string() }) }
}

async fn exec(table: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
    let spawn_err = |source| NftError::Spawn { table: table.to_string(), source };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.map_err(spawn_err)?;
        // Closing stdin tells nft the script is complete.
        drop(pipe);
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(NftError::Failed { table: table.to_string(), stderr });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_replaces_the_whole_table_in_one_transaction() {
        let script = table_script("inet", "flotilla-abc", "chain c { type nat hook postrouting priority 100; }");
        assert_eq!(
            script,
            "add table inet flotilla-abc\ndelete table inet flotilla-abc\ntable inet flotilla-abc {\n\
             chain c { type nat hook postrouting priority 100; }\n}\n"
        );
    }

    #[test]
    fn names_that_could_inject_nft_syntax_are_refused() {
        for bad in ["", "a b", "x;flush ruleset", "1abc", "a}"] {
            assert!(check_name("table", bad).is_err(), "{bad:?}");
        }
        for good in ["inet", "flotilla-1a2b3c4d", "flotilla_docker"] {
            assert!(check_name("table", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn chain_names_are_read_from_a_listing() {
        let listing = "table inet t {\n\tmap m {\n\t\ttype inet_service : verdict\n\t}\n\n\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n\t}\n\n\tchain svc/default/web/tcp/80 {\n\t}\n\tchain \"odd name\" {\n\t}\n}\n";
        assert_eq!(chain_names(listing), ["nat-output", "svc/default/web/tcp/80", "odd name"]);
        assert!(chain_names("").is_empty());
    }

    #[tokio::test]
    async fn applies_and_deletes_a_table_as_root() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: needs root for nftables");
            return;
        }
        let name = format!("flotilla-test-{}", std::process::id());
        let body = "chain post {\n type nat hook postrouting priority srcnat; policy accept;\n ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade\n}";
        apply_table("inet", &name, body).await.unwrap();
        // Applying twice replaces rather than appends.
        apply_table("inet", &name, body).await.unwrap();
        let listed = list_table("inet", &name).await.unwrap();
        assert_eq!(listed.matches("masquerade").count(), 1, "{listed}");
        assert!(list_tables().await.unwrap().contains(&("inet".to_string(), name.clone())));
        assert!(delete_table("inet", &name).await.unwrap());
        assert!(!delete_table("inet", &name).await.unwrap());
        let err = apply_table("inet", &name, "chain broken {").await.unwrap_err();
        assert!(matches!(err, NftError::Failed { .. }), "{err}");
        assert!(!list_tables().await.unwrap().iter().any(|(_, n)| n == &name));
    }
}
