//! `schema.prisma` is the source of truth for Ponte's data model; the SQL migrations in
//! `api/migrations/{postgres,sqlite}` implement it by hand. This test keeps them in step.
//!
//! It validates `schema.prisma` with Prisma's own validator (`tools/prisma/dmmf.js` prints
//! the DMMF), applies each migration to a fresh database (a throwaway PostgreSQL database,
//! an in-memory SQLite), reads the schema back from the catalogs, and checks, for every
//! model and every scalar/enum field: the table and column exist; the column type (as
//! `prisma migrate` would write it; SQLite enums are TEXT with a `CHECK (col IN (...))`
//! listing exactly the enum's values); NOT NULL iff required; `@id` / `@unique` iff a
//! single-column primary key / unique index; a default iff `@default`, `autoincrement()`
//! iff a sequence (SQLite: AUTOINCREMENT). Per model, `@@id` / `@@unique` / `@@index` match
//! the remaining indexes; the database has no table or column the model lacks; PostgreSQL
//! enum types have the same values in the same order. Not compared: foreign keys, default
//! values, `@map`/`@@map` (unused). All differences are reported in one failure.
//!
//! `compare` is a pure function of (DMMF, schema read back), so the second test can check
//! that it reports each difference planted in a doctored DMMF.

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::SqliteConnection;
use sqlx::{types::Json, Connection};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A column as read back: (normalised type, NOT NULL, default expression).
/// PostgreSQL types read `integer`, `timestamp(3) without time zone`, `USER-DEFINED <enum>`;
/// SQLite types are as declared, plus ` CHECK (A, B)` for `CHECK ("col" IN ('A', 'B'))`.
type Column = (String, bool, Option<String>);
/// (table, column, type, NOT NULL, default).
type ColumnRow = (String, String, String, bool, Option<String>);
/// (table, "primary key" | "unique" | "index", columns in order).
type IndexRow = (String, String, Vec<String>);

#[derive(Debug, Default)]
struct Table {
    columns: BTreeMap<String, Column>,
    indexes: BTreeSet<(String, Vec<String>)>,
}

#[derive(Debug)]
struct DbSchema {
    /// "PostgreSQL" or "SQLite".
    name: &'static str,
    tables: BTreeMap<String, Table>,
    /// Enum types and their values in order (PostgreSQL only).
    enums: BTreeMap<String, Vec<String>>,
}

impl DbSchema {
    fn new(name: &'static str, columns: Vec<ColumnRow>, indexes: Vec<IndexRow>) -> Self {
        let mut tables: BTreeMap<String, Table> = BTreeMap::new();
        for (table, column, ty, not_null, default) in columns {
            let columns = &mut tables.entry(table).or_default().columns;
            columns.insert(column, (ty, not_null, default));
        }
        for (table, kind, cols) in indexes {
            tables
                .entry(table)
                .or_default()
                .indexes
                .insert((kind, cols));
        }
        let enums = BTreeMap::new();
        DbSchema {
            name,
            tables,
            enums,
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The DMMF of `schema.prisma`, validated by Prisma (once per process).
fn dmmf() -> &'static Value {
    static DMMF: OnceLock<Value> = OnceLock::new();
    DMMF.get_or_init(|| {
        let tools = root().join("tools/prisma");
        if !tools
            .join("node_modules/@prisma/prisma-schema-wasm")
            .exists()
        {
            let mut npm = Command::new("npm");
            npm.args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&tools);
            let status = npm.status().expect("run npm (is Node.js installed?)");
            assert!(status.success(), "npm ci in tools/prisma failed: {status}");
        }
        let mut node = Command::new("node");
        node.args(["tools/prisma/dmmf.js", "schema.prisma"])
            .current_dir(root());
        let out = node.output().expect("run node (is Node.js installed?)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "schema.prisma is not valid Prisma:\n{stderr}"
        );
        serde_json::from_slice(&out.stdout).expect("dmmf.js printed invalid JSON")
    })
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn pick<T>(condition: bool, yes: T, no: T) -> T {
    if condition {
        yes
    } else {
        no
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn names(v: &Value) -> Vec<&str> {
    arr(v).iter().map(|x| text(&x["name"])).collect()
}

fn expected_type(db: &str, field: &Value, enums: &BTreeMap<&str, Vec<&str>>) -> String {
    let ty = text(&field["type"]);
    let (pg, sqlite) = match ty {
        _ if field["kind"] == "enum" => {
            let check = format!("TEXT CHECK ({})", enums[ty].join(", "));
            return pick(db == "SQLite", check, format!("USER-DEFINED {ty}"));
        }
        "Int" => ("integer", "INTEGER"),
        "BigInt" => ("bigint", "BIGINT"),
        "String" => ("text", "TEXT"),
        "Boolean" => ("boolean", "BOOLEAN"),
        "DateTime" => ("timestamp(3) without time zone", "DATETIME"),
        "Json" => ("jsonb", "TEXT"),
        _ => return format!("(no mapping for Prisma type {ty} in this test)"),
    };
    pick(db == "SQLite", sqlite, pg).to_string()
}

/// Single-column primary keys and unique indexes are checked per field (`isId`,
/// `isUnique`); the other indexes per model (`@@id`, `@@unique`, `@@index`).
fn model_level((kind, cols): &&(String, Vec<String>)) -> bool {
    cols.len() > 1 || kind == "index"
}

/// Every difference between the DMMF and a schema read back from a database.
fn compare(dmmf: &Value, db: &DbSchema) -> Vec<String> {
    let mut diffs = Vec::new();
    macro_rules! diff {
        ($($fmt:tt)*) => { diffs.push(format!($($fmt)*)) };
    }
    let (dm, on) = (&dmmf["datamodel"], db.name);
    let enums: BTreeMap<&str, Vec<&str>> = arr(&dm["enums"])
        .iter()
        .map(|e| (text(&e["name"]), names(&e["values"])))
        .collect();
    for model in arr(&dm["models"]) {
        let m = text(&model["name"]);
        let Some(table) = db.tables.get(m) else {
            diff!("{m}: in schema.prisma, no such table in {on}");
            continue;
        };
        let fields: Vec<&Value> = arr(&model["fields"])
            .iter()
            .filter(|f| f["kind"] != "object")
            .collect();
        for f in &fields {
            let (name, ty) = (text(&f["name"]), text(&f["type"]));
            let Some((db_ty, not_null, default)) = table.columns.get(name) else {
                diff!("{m}.{name}: in schema.prisma, no such column in {on}");
                continue;
            };
            let want = expected_type(on, f, &enums);
            if *db_ty != want {
                diff!("{m}.{name}: schema.prisma says {ty} ({want}), {on} says {db_ty}");
            }
            if f["isRequired"] != *not_null {
                let (prisma, have) = pick(
                    *not_null,
                    ("optional", "NOT NULL"),
                    ("required", "nullable"),
                );
                diff!("{m}.{name}: schema.prisma says {prisma}, {on} says {have}");
            }
            for (flag, kind) in [("isId", "primary key"), ("isUnique", "unique")] {
                if f[flag] != table.indexes.contains(&(kind.into(), vec![name.into()])) {
                    let (prisma, have) = pick(f[flag] == true, ("", "not "), ("not ", ""));
                    diff!("{m}.{name}: schema.prisma says {prisma}{kind}, {on} says {have}{kind}");
                }
            }
            let auto = f["default"]["name"] == "autoincrement";
            let db_auto = default
                .as_deref()
                .is_some_and(|d| d.contains("nextval(") || d == "AUTOINCREMENT");
            if f["hasDefaultValue"] != default.is_some() || auto != db_auto {
                let prisma = match (auto, f["hasDefaultValue"] == true) {
                    (true, _) => "autoincrement()",
                    (false, true) => "a default",
                    (false, false) => "no default",
                };
                let have = default
                    .as_ref()
                    .map_or("no default".into(), |d| format!("default {d}"));
                diff!("{m}.{name}: schema.prisma says {prisma}, {on} says {have}");
            }
        }
        let known: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
        for column in table
            .columns
            .keys()
            .filter(|c| !known.contains(&c.as_str()))
        {
            diff!("{m}: {on} has column {column}, schema.prisma does not");
        }
        let want: BTreeSet<(String, Vec<String>)> = arr(&dm["indexes"])
            .iter()
            .filter(|i| i["model"] == m)
            .map(|i| {
                let kind = match i["type"].as_str() {
                    Some("id") => "primary key",
                    Some("unique") => "unique",
                    _ => "index",
                };
                (
                    kind.into(),
                    names(&i["fields"]).into_iter().map(String::from).collect(),
                )
            })
            .collect();
        let (want, have) = (
            want.iter().filter(model_level),
            table.indexes.iter().filter(model_level),
        );
        let (want, have): (BTreeSet<_>, BTreeSet<_>) = (want.collect(), have.collect());
        for (kind, cols) in want.difference(&have) {
            diff!(
                "{m}: schema.prisma has {kind} ({}), {on} does not",
                cols.join(", ")
            );
        }
        for (kind, cols) in have.difference(&want) {
            diff!(
                "{m}: {on} has {kind} ({}), schema.prisma does not",
                cols.join(", ")
            );
        }
    }
    let models = names(&dm["models"]);
    for table in db.tables.keys().filter(|t| !models.contains(&t.as_str())) {
        diff!("{table}: {on} has this table, schema.prisma does not");
    }
    for (name, values) in enums.iter().filter(|_| on == "PostgreSQL") {
        match db.enums.get(*name) {
            None => diff!("enum {name}: in schema.prisma, not in {on}"),
            Some(have) if have != values => {
                diff!("enum {name}: schema.prisma says {values:?}, {on} says {have:?}")
            }
            Some(_) => {}
        }
    }
    for name in db.enums.keys().filter(|n| !enums.contains_key(n.as_str())) {
        diff!("enum {name}: {on} has it, schema.prisma does not");
    }
    diffs
}

/// Every migration of `backend`, in the order sqlx applies them.
fn migration(backend: &str) -> String {
    let dir = root().join(format!("api/migrations/{backend}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "migrations of {backend}: {files:?}");
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Applies the PostgreSQL migration to a fresh database, reads its schema, drops it.
async fn postgres_schema() -> anyhow::Result<DbSchema> {
    ponte_tests::mark_uses("postgres");
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var("PONTE_TEST_POSTGRES");
    let url = url
        .as_deref()
        .unwrap_or("postgres://postgres@127.0.0.1:5432/test");
    let admin_options: PgConnectOptions = url.parse()?;
    let mut admin = PgConnection::connect_with(&admin_options).await?;
    let (nanos, seq) = (
        std::time::UNIX_EPOCH.elapsed()?.as_nanos(),
        SEQ.fetch_add(1, Ordering::Relaxed),
    );
    let name = format!("ponte_schema_{}_{nanos}_{seq}", std::process::id());
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await?;
    let result = read_postgres(admin_options.database(&name)).await;
    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    if let Err(e) = sqlx::raw_sql(&drop).execute(&mut admin).await {
        eprintln!("warning: could not drop database {name}: {e}");
    }
    result
}

async fn read_postgres(options: PgConnectOptions) -> anyhow::Result<DbSchema> {
    let mut conn = PgConnection::connect_with(&options).await?;
    sqlx::raw_sql(&migration("postgres"))
        .execute(&mut conn)
        .await?;
    let columns = sqlx::query_as(
        "SELECT table_name::text, column_name::text,
                CASE WHEN data_type = 'USER-DEFINED' THEN 'USER-DEFINED ' || udt_name
                     WHEN data_type LIKE 'timestamp%'
                     THEN replace(data_type, 'timestamp', 'timestamp(' || datetime_precision || ')')
                     ELSE data_type::text END,
                is_nullable = 'NO', column_default::text
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await?;
    let indexes = sqlx::query_as(
        "SELECT t.relname::text,
                CASE WHEN i.indisprimary THEN 'primary key' WHEN i.indisunique THEN 'unique' ELSE 'index' END,
                array_agg(a.attname::text ORDER BY k.ord)
         FROM pg_index i
         JOIN pg_class t ON t.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
         WHERE n.nspname = 'public' AND t.relname <> '_sqlx_migrations'
         GROUP BY i.indexrelid, t.relname, i.indisprimary, i.indisunique",
    )
    .fetch_all(&mut conn)
    .await?;
    let enums: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
         FROM pg_type t
         JOIN pg_enum e ON e.enumtypid = t.oid
         JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = 'public'
         GROUP BY t.typname",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut db = DbSchema::new("PostgreSQL", columns, indexes);
    db.enums = enums.into_iter().collect();
    conn.close().await?;
    Ok(db)
}

/// The values of a `CHECK ("col" IN ('A', 'B'))` in a CREATE TABLE statement.
fn enum_check(sql: &str, column: &str) -> Option<Vec<String>> {
    let pattern = format!("CHECK (\"{column}\" IN (");
    let start = sql.find(&pattern)? + pattern.len();
    let values = &sql[start..start + sql[start..].find(')')?];
    Some(
        values
            .split(',')
            .map(|v| v.trim().trim_matches('\'').to_string())
            .collect(),
    )
}

/// Applies the SQLite migration to an in-memory database and reads its schema.
async fn sqlite_schema() -> anyhow::Result<DbSchema> {
    const IS_TABLE: &str =
        "m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'";
    let mut conn = SqliteConnection::connect("sqlite::memory:").await?;
    sqlx::raw_sql(&migration("sqlite"))
        .execute(&mut conn)
        .await?;
    // An AUTOINCREMENT primary key has no default expression: read it as one.
    let columns: Vec<(String, String, String, bool, Option<String>, String)> = sqlx::query_as(&format!(
        "SELECT m.name, p.name, p.type, p.\"notnull\",
                CASE WHEN p.pk > 0 AND m.sql LIKE '%AUTOINCREMENT%' THEN 'AUTOINCREMENT' ELSE p.dflt_value END,
                m.sql
         FROM sqlite_master m, pragma_table_info(m.name) p WHERE {IS_TABLE}"
    ))
    .fetch_all(&mut conn)
    .await?;
    let columns = columns
        .into_iter()
        .map(|(table, column, ty, not_null, default, sql)| {
            let ty = match enum_check(&sql, &column) {
                Some(values) => format!("{ty} CHECK ({})", values.join(", ")),
                None => ty,
            };
            (table, column, ty, not_null, default)
        });
    // The primary key comes from pragma_table_info: an INTEGER PRIMARY KEY has no index.
    let indexes: Vec<(String, String, Json<Vec<String>>)> = sqlx::query_as(&format!(
        "SELECT t, 'primary key', json_group_array(c) FROM (
             SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE {IS_TABLE} AND p.pk > 0
             ORDER BY p.pk
         ) GROUP BY t
         UNION ALL
         SELECT m.name, CASE WHEN l.\"unique\" THEN 'unique' ELSE 'index' END,
                (SELECT json_group_array(name) FROM
                    (SELECT name FROM pragma_index_info(l.name) ORDER BY seqno))
         FROM sqlite_master m, pragma_index_list(m.name) l WHERE {IS_TABLE} AND l.origin <> 'pk'"
    ))
    .fetch_all(&mut conn)
    .await?;
    let indexes = indexes
        .into_iter()
        .map(|(t, kind, Json(cols))| (t, kind, cols))
        .collect();
    conn.close().await?;
    Ok(DbSchema::new("SQLite", columns.collect(), indexes))
}

#[tokio::test]
async fn migrations_implement_schema_prisma() {
    let postgres = postgres_schema()
        .await
        .expect("read back the PostgreSQL schema");
    let sqlite = sqlite_schema().await.expect("read back the SQLite schema");
    let diffs: Vec<String> = [postgres, sqlite]
        .iter()
        .flat_map(|db| compare(dmmf(), db))
        .collect();
    assert!(
        diffs.is_empty(),
        "schema.prisma and the migrations differ:\n  {}",
        diffs.join("\n  ")
    );
}

fn named<'a>(list: &'a mut Value, name: &str) -> &'a mut Value {
    let found = list
        .as_array_mut()
        .and_then(|l| l.iter_mut().find(|x| x["name"] == name));
    found.unwrap_or_else(|| panic!("{name} is not in the DMMF"))
}

/// The comparison must report each way a model can stop matching the migrations.
#[tokio::test]
async fn comparison_reports_each_difference() {
    let mut dmmf = dmmf().clone();
    let con = named(&mut dmmf["datamodel"]["models"], "CONConnector");
    named(&mut con["fields"], "CONToken")["isRequired"] = true.into();
    named(&mut con["fields"], "CONVersao")["type"] = "Int".into();
    named(&mut con["fields"], "INSInstituicaoCodigo")["isUnique"] = false.into();
    con["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "CONMetadata");
    let indexes = dmmf["datamodel"]["indexes"].as_array_mut().unwrap();
    indexes.retain(|i| i["model"] != "RMTSessaoRemota" || i["type"] != "normal");
    let status = named(&mut dmmf["datamodel"]["enums"], "ENUM_CONNECTOR_STATUS");
    status["values"].as_array_mut().unwrap().pop(); // PAIRING

    let postgres = postgres_schema()
        .await
        .expect("read back the PostgreSQL schema");
    assert_eq!(
        compare(&dmmf, &postgres),
        [
            "CONConnector.CONToken: schema.prisma says required, PostgreSQL says nullable",
            "CONConnector.CONVersao: schema.prisma says Int (integer), PostgreSQL says text",
            "CONConnector.INSInstituicaoCodigo: schema.prisma says not unique, PostgreSQL says unique",
            "CONConnector: PostgreSQL has column CONMetadata, schema.prisma does not",
            "RMTSessaoRemota: PostgreSQL has index (INSInstituicaoCodigo, createdAt), schema.prisma does not",
            r#"enum ENUM_CONNECTOR_STATUS: schema.prisma says ["ONLINE", "OFFLINE"], PostgreSQL says ["ONLINE", "OFFLINE", "PAIRING"]"#,
        ]
    );
    let sqlite = sqlite_schema().await.expect("read back the SQLite schema");
    assert_eq!(
        compare(&dmmf, &sqlite),
        [
            "CONConnector.CONToken: schema.prisma says required, SQLite says nullable",
            "CONConnector.CONStatus: schema.prisma says ENUM_CONNECTOR_STATUS (TEXT CHECK (ONLINE, OFFLINE)), SQLite says TEXT CHECK (ONLINE, OFFLINE, PAIRING)",
            "CONConnector.CONVersao: schema.prisma says Int (INTEGER), SQLite says TEXT",
            "CONConnector.INSInstituicaoCodigo: schema.prisma says not unique, SQLite says unique",
            "CONConnector: SQLite has column CONMetadata, schema.prisma does not",
            "RMTSessaoRemota: SQLite has index (INSInstituicaoCodigo, createdAt), schema.prisma does not",
        ]
    );
}
