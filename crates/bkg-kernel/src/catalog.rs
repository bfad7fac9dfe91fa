//! The catalog: schemas, tables (with columns, constraints and indexes), views, roles and
//! publications.
//!
//! A [`Catalog`] is an immutable value shared as `Arc<Catalog>`. A transaction that runs DDL works
//! on its own copy and, at commit, the whole new catalog goes into the WAL commit record and
//! replaces the shared one; so DDL is transactional and a rolled-back DDL leaves no trace. Two
//! concurrent DDL transactions conflict (first committer wins).
//!
//! Columns have a *physical* position that never changes: `DROP COLUMN` marks the column dropped
//! and `ADD COLUMN` appends, so rows written under an older layout stay readable (a row shorter
//! than the layout reads the column's `missing` value).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::acl::{AclItem, RoleDef, default_roles, privilege};
use crate::error::{Error, Result};
use crate::publication::PublicationDef;
use crate::value::{DataType, Value};

/// First object id handed out, as in PostgreSQL (ids below are reserved for system objects).
pub const FIRST_USER_OID: u64 = 16384;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ColumnDefault {
    /// `GENERATED ALWAYS|BY DEFAULT AS IDENTITY`, `serial`, `bigserial`: a kernel sequence.
    Identity { always: bool },
    /// A SQL expression evaluated by the SQL layer at insert time.
    Expr(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    pub default: Option<ColumnDefault>,
    pub dropped: bool,
    /// Value read for rows written before the column existed.
    pub missing: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexDef {
    pub id: u64,
    pub name: String,
    /// Physical column positions.
    pub columns: Vec<usize>,
    pub unique: bool,
    pub primary: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForeignKeyDef {
    pub name: String,
    pub columns: Vec<usize>,
    pub ref_table: u64,
    pub ref_columns: Vec<usize>,
    /// What deleting a referenced row does.
    #[serde(default)]
    pub on_delete: FkAction,
}

/// `ON DELETE` action of a foreign key. (`ON UPDATE` is always NO ACTION.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FkAction {
    /// Refuse to remove a referenced key (checked at the end of the statement and at commit).
    #[default]
    NoAction,
    /// As NO ACTION (bkg-db checks both immediately).
    Restrict,
    /// Delete the referencing rows too.
    Cascade,
    /// Set the referencing columns to NULL.
    SetNull,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableDef {
    pub id: u64,
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub indexes: Vec<IndexDef>,
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKeyDef>,
    /// The owning role's oid.
    #[serde(default = "bootstrap_owner")]
    pub owner: u64,
    /// Privileges granted to others (the owner's are implicit).
    #[serde(default)]
    pub acl: Vec<AclItem>,
    /// Row-level security is on (`ALTER TABLE ... ENABLE ROW LEVEL SECURITY`).
    #[serde(default)]
    pub row_security: bool,
    /// Row-level security applies to the owner too (`FORCE ROW LEVEL SECURITY`).
    #[serde(default)]
    pub force_row_security: bool,
    /// Row-level security policies, in creation order.
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    /// CHECK constraints, in creation order. The kernel stores them; the SQL layer enforces
    /// them (the kernel knows no SQL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDef>,
}

/// A CHECK constraint: a boolean SQL expression over the table's columns that no row may make
/// false (NULL passes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDef {
    pub name: String,
    /// The expression as SQL text.
    pub expr: String,
    /// Added with NOT VALID and not validated since: rows written before it may break it.
    #[serde(default)]
    pub not_valid: bool,
}

/// The command a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyCommand {
    All,
    Select,
    Insert,
    Update,
    Delete,
}

impl PolicyCommand {
    /// The command's name as SQL spells it.
    pub fn name(self) -> &'static str {
        match self {
            PolicyCommand::All => "ALL",
            PolicyCommand::Select => "SELECT",
            PolicyCommand::Insert => "INSERT",
            PolicyCommand::Update => "UPDATE",
            PolicyCommand::Delete => "DELETE",
        }
    }

    /// True when a policy for `self` governs statements of `command`.
    pub fn covers(self, command: PolicyCommand) -> bool {
        self == PolicyCommand::All || self == command
    }
}

/// A row-level security policy (`CREATE POLICY`): which rows a role may see (`using`) and which
/// new rows it may write (`with_check`), as SQL boolean expressions over the table's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub oid: u64,
    pub name: String,
    pub command: PolicyCommand,
    /// Permissive policies are OR-ed together; restrictive ones are AND-ed onto the result.
    pub permissive: bool,
    /// Roles the policy applies to (members included); empty means PUBLIC.
    pub roles: Vec<u64>,
    pub using: Option<String>,
    pub with_check: Option<String>,
}

fn bootstrap_owner() -> u64 {
    crate::acl::BOOTSTRAP_SUPERUSER
}

impl TableDef {
    /// Physical positions of the live (not dropped) columns, in declaration order.
    pub fn live_columns(&self) -> impl Iterator<Item = (usize, &ColumnDef)> {
        self.columns.iter().enumerate().filter(|(_, c)| !c.dropped)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| !c.dropped && c.name == name)
    }

    pub fn primary_key(&self) -> Option<&IndexDef> {
        self.indexes.iter().find(|i| i.primary)
    }

    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewDef {
    pub id: u64,
    pub schema: String,
    pub name: String,
    /// The defining query, as PostgreSQL-dialect SQL text.
    pub sql: String,
    /// The view's output columns as planned at CREATE time (for the catalog tables).
    #[serde(default)]
    pub columns: Vec<(String, DataType)>,
    #[serde(default = "bootstrap_owner")]
    pub owner: u64,
    #[serde(default)]
    pub acl: Vec<AclItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaDef {
    pub id: u64,
    pub name: String,
    #[serde(default = "bootstrap_owner")]
    pub owner: u64,
    #[serde(default)]
    pub acl: Vec<AclItem>,
    /// Privileges every table and view created in the schema starts with (PostgreSQL's
    /// default privileges); the server sets them for the API roles in exposed schemas.
    #[serde(default)]
    pub default_acl: Vec<AclItem>,
    /// Tables created in the schema start with row-level security on (the server sets this
    /// for the schemas it exposes over HTTP).
    #[serde(default)]
    pub row_security_default: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    /// Bumped by every committed DDL transaction.
    pub version: u64,
    pub next_oid: u64,
    pub schemas: BTreeMap<String, SchemaDef>,
    pub tables: BTreeMap<u64, TableDef>,
    pub views: BTreeMap<u64, ViewDef>,
    /// Roles (users and groups) by oid.
    #[serde(default = "default_roles")]
    pub roles: BTreeMap<u64, RoleDef>,
    /// Publications (which tables' changes the realtime door emits) by oid.
    #[serde(default)]
    pub publications: BTreeMap<u64, PublicationDef>,
}

impl Default for Catalog {
    fn default() -> Self {
        let mut schemas = BTreeMap::new();
        // As in PostgreSQL 15: everyone may use `public`, only its owner may create in it.
        let public_usage =
            AclItem { grantee: crate::acl::PUBLIC, privileges: privilege::USAGE, grantor: bootstrap_owner() };
        schemas.insert(
            "public".to_string(),
            SchemaDef {
                id: 2200,
                name: "public".into(),
                owner: bootstrap_owner(),
                acl: vec![public_usage],
                default_acl: vec![],
                row_security_default: false,
            },
        );
        Catalog {
            version: 1,
            next_oid: FIRST_USER_OID,
            schemas,
            tables: BTreeMap::new(),
            views: BTreeMap::new(),
            roles: default_roles(),
            publications: BTreeMap::new(),
        }
    }
}

impl Catalog {
    pub fn alloc_oid(&mut self) -> u64 {
        let id = self.next_oid;
        self.next_oid += 1;
        id
    }

    pub fn table(&self, id: u64) -> Option<&TableDef> {
        self.tables.get(&id)
    }

    pub fn find_table(&self, schema: &str, name: &str) -> Option<&TableDef> {
        self.tables.values().find(|t| t.schema == schema && t.name == name)
    }

    pub fn find_view(&self, schema: &str, name: &str) -> Option<&ViewDef> {
        self.views.values().find(|v| v.schema == schema && v.name == name)
    }

    fn relation_exists(&self, schema: &str, name: &str) -> bool {
        self.find_table(schema, name).is_some()
            || self.find_view(schema, name).is_some()
            || self.tables.values().any(|t| t.schema == schema && t.indexes.iter().any(|i| i.name == name))
    }

    pub fn create_schema(&mut self, name: &str, if_not_exists: bool, owner: u64) -> Result<bool> {
        if self.schemas.contains_key(name) {
            return if if_not_exists { Ok(false) } else { Err(Error::DuplicateSchema(name.into())) };
        }
        let id = self.alloc_oid();
        self.schemas.insert(
            name.to_string(),
            SchemaDef { id, name: name.into(), owner, acl: vec![], default_acl: vec![], row_security_default: false },
        );
        Ok(true)
    }

    pub fn drop_schema(&mut self, name: &str, if_exists: bool, cascade: bool) -> Result<Vec<u64>> {
        if !self.schemas.contains_key(name) {
            return if if_exists { Ok(vec![]) } else { Err(Error::UndefinedSchema(name.into())) };
        }
        let tables: Vec<u64> = self.tables.values().filter(|t| t.schema == name).map(|t| t.id).collect();
        let views: Vec<u64> = self.views.values().filter(|v| v.schema == name).map(|v| v.id).collect();
        if !cascade && (!tables.is_empty() || !views.is_empty()) {
            return Err(Error::DependentObjects {
                what: format!("schema {name}"),
                detail: format!("{} table(s) and {} view(s) live in it", tables.len(), views.len()),
            });
        }
        for id in &tables {
            self.tables.remove(id);
        }
        for id in &views {
            self.views.remove(id);
        }
        self.schemas.remove(name);
        for id in &tables {
            self.unpublish_table(*id);
        }
        self.unpublish_schema(name);
        Ok(tables)
    }

    /// Adds a table; `def.id` and index ids are assigned here.
    pub fn create_table(&mut self, mut def: TableDef, if_not_exists: bool) -> Result<Option<u64>> {
        let Some(schema) = self.schemas.get(&def.schema) else {
            return Err(Error::UndefinedSchema(def.schema.clone()));
        };
        if def.acl.is_empty() {
            def.acl = schema.default_acl.iter().filter(|a| a.grantee != def.owner).cloned().collect();
        }
        def.row_security |= schema.row_security_default;
        if self.relation_exists(&def.schema, &def.name) {
            return if if_not_exists { Ok(None) } else { Err(Error::DuplicateTable(def.name.clone())) };
        }
        let mut seen = std::collections::HashSet::new();
        for c in &def.columns {
            if !seen.insert(c.name.as_str()) {
                return Err(Error::DuplicateColumn { table: def.name.clone(), column: c.name.clone() });
            }
        }
        if def.indexes.iter().filter(|i| i.primary).count() > 1 {
            return Err(Error::InvalidDefinition(format!(
                "multiple primary keys for table \"{}\" are not allowed",
                def.name
            )));
        }
        def.id = self.alloc_oid();
        for idx in &mut def.indexes {
            idx.id = self.alloc_oid();
            if idx.primary {
                for &c in &idx.columns {
                    def.columns[c].nullable = false;
                }
            }
        }
        let id = def.id;
        self.tables.insert(id, def);
        Ok(Some(id))
    }

    pub fn drop_table(&mut self, id: u64, cascade: bool) -> Result<()> {
        let referencing: Vec<String> = self
            .tables
            .values()
            .filter(|t| t.id != id && t.foreign_keys.iter().any(|fk| fk.ref_table == id))
            .map(|t| t.qualified_name())
            .collect();
        if !referencing.is_empty() {
            if !cascade {
                let name = self.tables.get(&id).map(|t| t.name.clone()).unwrap_or_default();
                return Err(Error::DependentObjects {
                    what: format!("table {name}"),
                    detail: format!("foreign keys in {} reference it", referencing.join(", ")),
                });
            }
            for t in self.tables.values_mut() {
                t.foreign_keys.retain(|fk| fk.ref_table != id);
            }
        }
        self.tables.remove(&id).ok_or_else(|| Error::Internal(format!("table {id} vanished")))?;
        self.unpublish_table(id);
        Ok(())
    }

    pub fn create_view(&mut self, schema: &str, name: &str, sql: &str, or_replace: bool, owner: u64) -> Result<u64> {
        if !self.schemas.contains_key(schema) {
            return Err(Error::UndefinedSchema(schema.into()));
        }
        if let Some(existing) = self.find_view(schema, name) {
            if or_replace {
                let id = existing.id;
                self.views.get_mut(&id).expect("view exists").sql = sql.to_string();
                return Ok(id);
            }
            return Err(Error::DuplicateTable(name.into()));
        }
        if self.relation_exists(schema, name) {
            return Err(Error::DuplicateTable(name.into()));
        }
        let acl = self.schemas[schema].default_acl.iter().filter(|a| a.grantee != owner).cloned().collect();
        let id = self.alloc_oid();
        self.views.insert(
            id,
            ViewDef { id, schema: schema.into(), name: name.into(), sql: sql.into(), columns: vec![], owner, acl },
        );
        Ok(id)
    }

    pub fn drop_view(&mut self, schema: &str, name: &str, if_exists: bool) -> Result<()> {
        match self.find_view(schema, name).map(|v| v.id) {
            Some(id) => {
                self.views.remove(&id);
                Ok(())
            }
            None if if_exists => Ok(()),
            None => Err(Error::UndefinedTable(name.into())),
        }
    }

    pub fn table_mut(&mut self, id: u64) -> Result<&mut TableDef> {
        self.tables.get_mut(&id).ok_or_else(|| Error::Internal(format!("table {id} vanished")))
    }

    pub fn add_column(&mut self, id: u64, col: ColumnDef, if_not_exists: bool) -> Result<bool> {
        let t = self.table_mut(id)?;
        if t.column_index(&col.name).is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::DuplicateColumn { table: t.name.clone(), column: col.name })
            };
        }
        t.columns.push(col);
        Ok(true)
    }

    pub fn drop_column(&mut self, id: u64, name: &str, if_exists: bool) -> Result<bool> {
        let t = self.table_mut(id)?;
        let Some(pos) = t.column_index(name) else {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::UndefinedColumn { table: t.name.clone(), column: name.into() })
            };
        };
        if t.indexes.iter().any(|i| i.primary && i.columns.contains(&pos)) {
            return Err(Error::DependentObjects {
                what: format!("column {name} of table {}", t.name),
                detail: "it is part of the primary key".into(),
            });
        }
        t.indexes.retain(|i| !i.columns.contains(&pos));
        t.columns[pos].dropped = true;
        t.columns[pos].name = format!("........pg.dropped.{pos}........");
        Ok(true)
    }

    pub fn rename_column(&mut self, id: u64, from: &str, to: &str) -> Result<()> {
        let t = self.table_mut(id)?;
        let Some(pos) = t.column_index(from) else {
            return Err(Error::UndefinedColumn { table: t.name.clone(), column: from.into() });
        };
        if t.column_index(to).is_some() {
            return Err(Error::DuplicateColumn { table: t.name.clone(), column: to.into() });
        }
        t.columns[pos].name = to.to_string();
        Ok(())
    }

    pub fn rename_table(&mut self, id: u64, to: &str) -> Result<()> {
        let schema = self.table(id).map(|t| t.schema.clone()).unwrap_or_default();
        if self.relation_exists(&schema, to) {
            return Err(Error::DuplicateTable(to.into()));
        }
        self.table_mut(id)?.name = to.to_string();
        Ok(())
    }

    pub fn add_index(&mut self, table: u64, mut idx: IndexDef, if_not_exists: bool) -> Result<Option<u64>> {
        let schema = self.table(table).map(|t| t.schema.clone()).unwrap_or_default();
        if self.relation_exists(&schema, &idx.name) {
            return if if_not_exists { Ok(None) } else { Err(Error::DuplicateTable(idx.name.clone())) };
        }
        idx.id = self.alloc_oid();
        let id = idx.id;
        let t = self.table_mut(table)?;
        if idx.primary {
            if t.primary_key().is_some() {
                return Err(Error::InvalidDefinition(format!(
                    "multiple primary keys for table \"{}\" are not allowed",
                    t.name
                )));
            }
            for &c in &idx.columns {
                t.columns[c].nullable = false;
            }
        }
        t.indexes.push(idx);
        Ok(Some(id))
    }

    /// Finds an index by name in a schema; returns (table id, index position).
    /// Adds a policy to a table; the policy's oid is assigned here.
    pub fn create_policy(&mut self, table: u64, mut policy: PolicyDef) -> Result<u64> {
        let oid = self.alloc_oid();
        let def = self.table_mut(table)?;
        if def.policies.iter().any(|p| p.name == policy.name) {
            return Err(Error::DuplicateObject {
                kind: "policy",
                name: format!("{}\" for table \"{}", policy.name, def.name),
            });
        }
        policy.oid = oid;
        def.policies.push(policy);
        Ok(oid)
    }

    /// The policy `name` of a table, to change in place.
    pub fn policy_mut(&mut self, table: u64, name: &str) -> Result<&mut PolicyDef> {
        let def = self.table_mut(table)?;
        let tname = def.name.clone();
        def.policies
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::UndefinedObject { kind: "policy", name: format!("{name}\" for table \"{tname}") })
    }

    /// Removes a policy; `Ok(false)` when it does not exist and `if_exists` is set.
    pub fn drop_policy(&mut self, table: u64, name: &str, if_exists: bool) -> Result<bool> {
        let def = self.table_mut(table)?;
        let before = def.policies.len();
        def.policies.retain(|p| p.name != name);
        if def.policies.len() == before {
            if if_exists {
                return Ok(false);
            }
            return Err(Error::UndefinedObject { kind: "policy", name: format!("{name}\" for table \"{}", def.name) });
        }
        Ok(true)
    }

    pub fn find_index(&self, schema: &str, name: &str) -> Option<(u64, usize)> {
        self.tables
            .values()
            .filter(|t| t.schema == schema)
            .find_map(|t| t.indexes.iter().position(|i| i.name == name).map(|p| (t.id, p)))
    }
}
