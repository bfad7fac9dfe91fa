//! Publications: which tables' committed changes the realtime door emits, as PostgreSQL's
//! `CREATE PUBLICATION` has them (`FOR ALL TABLES`, `FOR TABLE a, b`, `FOR TABLES IN SCHEMA s`,
//! `WITH (publish = 'insert, update, delete, truncate')`).
//!
//! They live in the [`Catalog`] like every other object, so they are transactional, written to
//! the WAL with the commit and kept in snapshots; a catalog written before publications existed
//! reads as one with none.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, TableDef};
use crate::error::{Error, Result};

/// Which kinds of change a publication emits (`publish = '...'`; all four by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishKinds {
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
    pub truncate: bool,
}

impl Default for PublishKinds {
    fn default() -> Self {
        PublishKinds { insert: true, update: true, delete: true, truncate: true }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationDef {
    pub id: u64,
    pub name: String,
    pub owner: u64,
    /// `FOR ALL TABLES`: every table, present and future.
    pub all_tables: bool,
    /// Tables named with `FOR TABLE` / `ADD TABLE`, by id.
    pub tables: BTreeSet<u64>,
    /// Schemas named with `FOR TABLES IN SCHEMA`: every table in them, present and future.
    pub schemas: BTreeSet<String>,
    pub publish: PublishKinds,
}

impl PublicationDef {
    /// Whether changes of `def` go out through this publication.
    pub fn includes(&self, def: &TableDef) -> bool {
        self.all_tables || self.tables.contains(&def.id) || self.schemas.contains(&def.schema)
    }
}

impl Catalog {
    pub fn publication(&self, name: &str) -> Option<&PublicationDef> {
        self.publications.values().find(|p| p.name == name)
    }

    /// Adds a publication; its id is assigned here. Every table it names must exist.
    pub fn create_publication(&mut self, mut def: PublicationDef) -> Result<u64> {
        if self.publication(&def.name).is_some() {
            return Err(Error::DuplicateObject { kind: "publication", name: def.name });
        }
        self.check_members(&def)?;
        def.id = self.alloc_oid();
        let id = def.id;
        self.publications.insert(id, def);
        Ok(id)
    }

    /// Replaces the publication called `name` with `def` (same id), after checking its members.
    pub fn replace_publication(&mut self, name: &str, def: PublicationDef) -> Result<()> {
        let id = self.publication(name).map(|p| p.id).ok_or_else(|| undefined(name))?;
        if def.name != name && self.publication(&def.name).is_some() {
            return Err(Error::DuplicateObject { kind: "publication", name: def.name });
        }
        self.check_members(&def)?;
        self.publications.insert(id, PublicationDef { id, ..def });
        Ok(())
    }

    /// Drops the publication called `name`; false when it does not exist and `if_exists`.
    pub fn drop_publication(&mut self, name: &str, if_exists: bool) -> Result<bool> {
        match self.publication(name).map(|p| p.id) {
            Some(id) => {
                self.publications.remove(&id);
                Ok(true)
            }
            None if if_exists => Ok(false),
            None => Err(undefined(name)),
        }
    }

    /// The publications that emit changes of `def`.
    pub fn publications_of<'a>(&'a self, def: &'a TableDef) -> impl Iterator<Item = &'a PublicationDef> + 'a {
        self.publications.values().filter(move |p| p.includes(def))
    }

    /// Forgets a dropped table in every publication (PostgreSQL drops the membership with it).
    pub(crate) fn unpublish_table(&mut self, table: u64) {
        for p in self.publications.values_mut() {
            p.tables.remove(&table);
        }
    }

    /// Forgets a dropped schema in every publication.
    pub(crate) fn unpublish_schema(&mut self, schema: &str) {
        for p in self.publications.values_mut() {
            p.schemas.remove(schema);
        }
    }

    fn check_members(&self, def: &PublicationDef) -> Result<()> {
        if let Some(missing) = def.tables.iter().find(|t| !self.tables.contains_key(t)) {
            return Err(Error::UndefinedTable(format!("table with oid {missing}")));
        }
        if let Some(missing) = def.schemas.iter().find(|s| !self.schemas.contains_key(*s)) {
            return Err(Error::UndefinedSchema(missing.clone()));
        }
        Ok(())
    }
}

fn undefined(name: &str) -> Error {
    Error::UndefinedObject { kind: "publication", name: name.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::DataType;

    fn table(cat: &mut Catalog, schema: &str, name: &str) -> u64 {
        let def = crate::testutil::table_def(schema, name, vec![crate::testutil::col("id", DataType::Int64, false)]);
        cat.create_table(def, false).unwrap().unwrap()
    }

    fn publication(name: &str, tables: &[u64]) -> PublicationDef {
        PublicationDef {
            id: 0,
            name: name.into(),
            owner: crate::acl::BOOTSTRAP_SUPERUSER,
            all_tables: false,
            tables: tables.iter().copied().collect(),
            schemas: BTreeSet::new(),
            publish: PublishKinds::default(),
        }
    }

    #[test]
    fn membership_follows_tables_and_schemas() {
        let mut cat = Catalog::default();
        let a = table(&mut cat, "public", "a");
        let b = table(&mut cat, "public", "b");
        cat.create_schema("other", false, crate::acl::BOOTSTRAP_SUPERUSER).unwrap();
        let c = table(&mut cat, "other", "c");
        cat.create_publication(publication("p", &[a])).unwrap();
        let mut in_schema = publication("q", &[]);
        in_schema.schemas.insert("other".into());
        cat.create_publication(in_schema).unwrap();
        let names = |cat: &Catalog, t: u64| {
            cat.publications_of(cat.table(t).unwrap()).map(|p| p.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!((names(&cat, a), names(&cat, b), names(&cat, c)), (vec!["p".into()], vec![], vec!["q".into()]));
        assert!(matches!(cat.create_publication(publication("p", &[])), Err(Error::DuplicateObject { .. })));
        assert!(matches!(cat.create_publication(publication("r", &[9_999_999])), Err(Error::UndefinedTable(_))));
        cat.drop_table(a, false).unwrap();
        assert!(cat.publication("p").unwrap().tables.is_empty());
        cat.drop_schema("other", false, true).unwrap();
        assert!(cat.publication("q").unwrap().schemas.is_empty());
        assert!(cat.drop_publication("p", false).unwrap());
        assert!(!cat.drop_publication("p", true).unwrap());
        assert!(matches!(cat.drop_publication("p", false), Err(Error::UndefinedObject { .. })));
    }

    #[test]
    fn a_catalog_from_before_publications_reads_with_none() {
        let mut json = serde_json::to_value(Catalog::default()).unwrap();
        json.as_object_mut().unwrap().remove("publications");
        let cat: Catalog = serde_json::from_value(json).unwrap();
        assert!(cat.publications.is_empty());
    }
}
