//! Database-level properties: `ALTER DATABASE … SET`, per-role settings in the database,
//! database privileges, its comment and connection limit.
//!
//! `pg_dump` writes these only with `--create`, and a restore that builds a new database beside
//! the target cannot use `--create` (the names differ). So the backup reads them from the
//! catalogs into the snapshot's metadata, and the restore applies them to the new database
//! before the swap. A `SET timezone = 'UTC'` that the application relies on must survive a
//! restore onto a fresh server.
//!
//! This module owns reading and re-applying them; it must not decide *where* a restore goes.

use super::server::{Conn, ident, literal};
use serde::{Deserialize, Serialize};

/// What a database carries besides its objects; stored as metadata `database_properties`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Properties {
    /// `ALTER DATABASE … SET` entries, as `name=value` in the catalog's form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    /// `ALTER ROLE r IN DATABASE … SET` entries: role and `name=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_settings: Vec<(String, String)>,
    /// Privileges when not the default: grantee (`PUBLIC` or a role), privilege, grantable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Vec<(String, String, bool)>>,
    /// `COMMENT ON DATABASE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `CONNECTION LIMIT`, when not unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i32>,
}

impl Properties {
    /// True when the database has nothing beyond the defaults.
    pub fn is_default(&self) -> bool {
        *self == Properties::default()
    }

    /// Reads the properties of the connected database.
    pub fn read(client: &mut postgres::Client) -> Result<Properties, postgres::Error> {
        let row = client.query_one(
            "SELECT COALESCE((SELECT s.setconfig FROM pg_db_role_setting s \
                 WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}')::text[], \
             d.datconnlimit, shobj_description(d.oid, 'pg_database'), d.datacl IS NOT NULL \
             FROM pg_database d WHERE d.datname = current_database()",
            &[],
        )?;
        let mut p = Properties {
            settings: row.get(0),
            comment: row.get(2),
            ..Default::default()
        };
        let limit: i32 = row.get(1);
        if limit >= 0 {
            p.connection_limit = Some(limit);
        }
        if row.get::<_, bool>(3) {
            p.privileges = Some(
                client
                    .query(
                        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                         ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable \
                         FROM pg_database d, aclexplode(d.datacl) a \
                         WHERE d.datname = current_database() ORDER BY 1, 2",
                        &[],
                    )?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect(),
            );
        }
        for r in client.query(
            "SELECT pg_get_userbyid(s.setrole)::text, unnest(s.setconfig) \
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = current_database() AND s.setrole <> 0 ORDER BY 1",
            &[],
        )? {
            p.role_settings.push((r.get(0), r.get(1)));
        }
        Ok(p)
    }

    /// The statements that give database `db` these properties.
    pub fn statements(&self, db: &str) -> Vec<String> {
        let db = ident(db);
        let mut out = Vec::new();
        for s in &self.settings {
            if let Some(set) = set_clause(s) {
                out.push(format!("ALTER DATABASE {db} {set}"));
            }
        }
        for (role, s) in &self.role_settings {
            if let Some(set) = set_clause(s) {
                out.push(format!("ALTER ROLE {} IN DATABASE {db} {set}", ident(role)));
            }
        }
        if let Some(privs) = &self.privileges {
            out.push(format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"));
            for (grantee, privilege, grantable) in privs {
                let to = if grantee == "PUBLIC" {
                    "PUBLIC".to_string()
                } else {
                    ident(grantee)
                };
                out.push(format!(
                    "GRANT {privilege} ON DATABASE {db} TO {to}{}",
                    if *grantable { " WITH GRANT OPTION" } else { "" }
                ));
            }
        }
        if let Some(c) = &self.comment {
            out.push(format!("COMMENT ON DATABASE {db} IS {}", literal(c)));
        }
        if let Some(n) = self.connection_limit {
            out.push(format!("ALTER DATABASE {db} CONNECTION LIMIT {n}"));
        }
        out
    }

    /// Applies the properties to database `db` through an administrative connection.
    /// Returns the statements that failed with their errors: a setting the restoring role may
    /// not make, or a role this server lacks, must not fail a restore that is otherwise whole.
    pub fn apply(
        &self,
        client: &mut postgres::Client,
        admin: &Conn,
        db: &str,
    ) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for stmt in self.statements(db) {
            if let Err(e) = client.batch_execute(&stmt) {
                failed.push((stmt, admin.explain(&e)));
            }
        }
        failed
    }
}

/// Settings whose values are lists of names, quoted element by element (as `pg_dump`'s
/// `variable_is_guc_list_quote` knows them).
const LIST_SETTINGS: &[&str] = &[
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// Turns a catalog entry `name=value` into `SET name = 'value'` (or a quoted list).
fn set_clause(entry: &str) -> Option<String> {
    let (name, value) = entry.split_once('=')?;
    let values = if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        let items = split_list(value);
        if items.is_empty() {
            // An empty list is written as one empty string.
            literal("")
        } else {
            items
                .iter()
                .map(|i| literal(i))
                .collect::<Vec<_>>()
                .join(", ")
        }
    } else {
        literal(value)
    };
    Some(format!("SET {} = {values}", ident(name)))
}

/// Splits a list setting's stored value (`"$user", public`) into its names.
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut item = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
            while chars.peek().is_some_and(|&c| c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim_end().to_string();
        }
        out.push(item);
        if chars.next().is_none() {
            break; // no comma: the end
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_are_quoted_per_name() {
        assert_eq!(split_list("\"$user\", public"), vec!["$user", "public"]);
        assert_eq!(split_list("a,\"b\"\"c\" , d e"), vec!["a", "b\"c", "d e"]);
        assert_eq!(split_list(""), Vec::<String>::new());
        assert_eq!(
            set_clause("search_path=\"$user\", app").unwrap(),
            "SET \"search_path\" = '$user', 'app'"
        );
        assert_eq!(
            set_clause("TimeZone=Europe/Paris").unwrap(),
            "SET \"TimeZone\" = 'Europe/Paris'"
        );
        assert_eq!(
            set_clause("app.greeting=it's a=b").unwrap(),
            "SET \"app.greeting\" = 'it''s a=b'"
        );
        assert_eq!(set_clause("garbage"), None);
    }

    #[test]
    fn statements_cover_every_property() {
        let p = Properties {
            settings: vec!["work_mem=64MB".into()],
            role_settings: vec![("app".into(), "statement_timeout=5s".into())],
            privileges: Some(vec![
                ("PUBLIC".into(), "CONNECT".into(), false),
                ("app".into(), "CREATE".into(), true),
            ]),
            comment: Some("hotel's".into()),
            connection_limit: Some(50),
        };
        assert_eq!(
            p.statements("new"),
            vec![
                "ALTER DATABASE \"new\" SET \"work_mem\" = '64MB'",
                "ALTER ROLE \"app\" IN DATABASE \"new\" SET \"statement_timeout\" = '5s'",
                "REVOKE ALL ON DATABASE \"new\" FROM PUBLIC",
                "GRANT CONNECT ON DATABASE \"new\" TO PUBLIC",
                "GRANT CREATE ON DATABASE \"new\" TO \"app\" WITH GRANT OPTION",
                "COMMENT ON DATABASE \"new\" IS 'hotel''s'",
                "ALTER DATABASE \"new\" CONNECTION LIMIT 50",
            ]
        );
        assert!(Properties::default().is_default());
        assert!(Properties::default().statements("x").is_empty());
    }
}
