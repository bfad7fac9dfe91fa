//! Roles and privileges, kept in the [`Catalog`] so they are transactional and recovered with it.
//!
//! The model is PostgreSQL's: a role may log in or not (a "user" or a "group"), may be a
//! superuser, and is a member of other roles whose privileges it inherits. Tables, views and
//! schemas have an owner, who holds every privilege on them, and an access list of grants to
//! other roles or to `PUBLIC`. Passwords are stored only as SCRAM-SHA-256 verifiers in
//! PostgreSQL's text form (`SCRAM-SHA-256$<iterations>:<salt>$<stored key>:<server key>`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// The bootstrap superuser `postgres`, with PostgreSQL's oid.
pub const BOOTSTRAP_SUPERUSER: u64 = 10;
/// The grantee id that stands for `PUBLIC` (every role).
pub const PUBLIC: u64 = 0;

/// Privilege bits of an [`AclItem`].
pub mod privilege {
    pub const SELECT: u32 = 1;
    pub const INSERT: u32 = 1 << 1;
    pub const UPDATE: u32 = 1 << 2;
    pub const DELETE: u32 = 1 << 3;
    pub const TRUNCATE: u32 = 1 << 4;
    pub const REFERENCES: u32 = 1 << 5;
    pub const TRIGGER: u32 = 1 << 6;
    pub const USAGE: u32 = 1 << 8;
    pub const CREATE: u32 = 1 << 9;
    /// Everything a table or view can be granted.
    pub const TABLE_ALL: u32 = SELECT | INSERT | UPDATE | DELETE | TRUNCATE | REFERENCES | TRIGGER;
    /// Everything a schema can be granted.
    pub const SCHEMA_ALL: u32 = USAGE | CREATE;

    /// PostgreSQL's one-letter codes, in its order (`arwdDxt` for tables, `UC` for schemas).
    pub const LETTERS: [(u32, char); 9] = [
        (INSERT, 'a'),
        (SELECT, 'r'),
        (UPDATE, 'w'),
        (DELETE, 'd'),
        (TRUNCATE, 'D'),
        (REFERENCES, 'x'),
        (TRIGGER, 't'),
        (USAGE, 'U'),
        (CREATE, 'C'),
    ];

    /// The privilege's SQL keyword.
    pub fn name(bit: u32) -> &'static str {
        match bit {
            SELECT => "SELECT",
            INSERT => "INSERT",
            UPDATE => "UPDATE",
            DELETE => "DELETE",
            TRUNCATE => "TRUNCATE",
            REFERENCES => "REFERENCES",
            TRIGGER => "TRIGGER",
            USAGE => "USAGE",
            CREATE => "CREATE",
            _ => "?",
        }
    }
}

/// One grant: `grantee` (a role oid or [`PUBLIC`]) holds `privileges`, granted by `grantor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclItem {
    pub grantee: u64,
    pub privileges: u32,
    pub grantor: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleDef {
    pub oid: u64,
    pub name: String,
    pub superuser: bool,
    /// Uses the privileges of the roles it is a member of without `SET ROLE`.
    pub inherit: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub login: bool,
    pub bypass_rls: bool,
    /// Most connections at once; -1 for no limit.
    pub connection_limit: i32,
    /// SCRAM-SHA-256 verifier; `None` means password login is impossible.
    pub password: Option<String>,
    /// Roles this role is a direct member of.
    pub member_of: Vec<u64>,
    /// `VALID UNTIL`: after this instant (microseconds since 1970, UTC) the password no longer
    /// logs in; `None` for ever.
    #[serde(default)]
    pub valid_until: Option<i64>,
}

impl RoleDef {
    /// A role with PostgreSQL's `CREATE ROLE` defaults (no login, inherits).
    pub fn new(name: &str) -> RoleDef {
        RoleDef {
            oid: 0,
            name: name.to_string(),
            superuser: false,
            inherit: true,
            create_role: false,
            create_db: false,
            login: false,
            bypass_rls: false,
            connection_limit: -1,
            password: None,
            member_of: vec![],
            valid_until: None,
        }
    }
}

/// The roles every new catalog starts with: the bootstrap superuser.
pub fn default_roles() -> BTreeMap<u64, RoleDef> {
    let mut postgres = RoleDef::new("postgres");
    postgres.oid = BOOTSTRAP_SUPERUSER;
    postgres.superuser = true;
    postgres.create_role = true;
    postgres.create_db = true;
    postgres.login = true;
    postgres.bypass_rls = true;
    BTreeMap::from([(BOOTSTRAP_SUPERUSER, postgres)])
}

/// Something privileges are granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclObject<'a> {
    /// A table or a view, by oid.
    Relation(u64),
    Schema(&'a str),
}

impl Catalog {
    pub fn role(&self, oid: u64) -> Option<&RoleDef> {
        self.roles.get(&oid)
    }

    pub fn find_role(&self, name: &str) -> Option<&RoleDef> {
        self.roles.values().find(|r| r.name == name)
    }

    fn role_named(&self, name: &str) -> Result<&RoleDef> {
        self.find_role(name).ok_or_else(|| Error::UndefinedObject { kind: "role", name: name.into() })
    }

    /// Adds a role; its oid is assigned here and returned.
    pub fn create_role(&mut self, mut role: RoleDef) -> Result<u64> {
        if self.find_role(&role.name).is_some() {
            return Err(Error::DuplicateObject { kind: "role", name: role.name });
        }
        if role.name.is_empty() || role.name.eq_ignore_ascii_case("public") || role.name.starts_with("pg_") {
            return Err(Error::InvalidDefinition(format!("role name \"{}\" is reserved", role.name)));
        }
        role.oid = self.alloc_oid();
        let oid = role.oid;
        self.roles.insert(oid, role);
        Ok(oid)
    }

    /// The role named `name`, to change in place.
    pub fn role_mut(&mut self, name: &str) -> Result<&mut RoleDef> {
        let oid = self.role_named(name)?.oid;
        Ok(self.roles.get_mut(&oid).expect("role exists"))
    }

    pub fn rename_role(&mut self, from: &str, to: &str) -> Result<()> {
        if self.find_role(to).is_some() {
            return Err(Error::DuplicateObject { kind: "role", name: to.into() });
        }
        let role = self.role_mut(from)?;
        if role.oid == BOOTSTRAP_SUPERUSER {
            return Err(Error::InvalidDefinition("the bootstrap superuser cannot be renamed".into()));
        }
        role.name = to.to_string();
        Ok(())
    }

    /// Removes a role, its memberships and the grants made to it. Refused while it owns objects.
    pub fn drop_role(&mut self, name: &str, if_exists: bool) -> Result<bool> {
        let Some(oid) = self.find_role(name).map(|r| r.oid) else {
            return if if_exists { Ok(false) } else { Err(Error::UndefinedObject { kind: "role", name: name.into() }) };
        };
        if oid == BOOTSTRAP_SUPERUSER {
            return Err(Error::InvalidDefinition("the bootstrap superuser cannot be dropped".into()));
        }
        let owned: Vec<String> = self
            .tables
            .values()
            .filter(|t| t.owner == oid)
            .map(|t| format!("table {}", t.qualified_name()))
            .chain(self.views.values().filter(|v| v.owner == oid).map(|v| format!("view {}.{}", v.schema, v.name)))
            .chain(self.schemas.values().filter(|s| s.owner == oid).map(|s| format!("schema {}", s.name)))
            .collect();
        if !owned.is_empty() {
            return Err(Error::DependentObjects {
                what: format!("role \"{name}\""),
                detail: format!("owner of {}", owned.join(", ")),
            });
        }
        self.roles.remove(&oid);
        for r in self.roles.values_mut() {
            r.member_of.retain(|m| *m != oid);
        }
        let strip = |acl: &mut Vec<AclItem>| acl.retain(|a| a.grantee != oid);
        self.tables.values_mut().for_each(|t| strip(&mut t.acl));
        self.views.values_mut().for_each(|v| strip(&mut v.acl));
        self.schemas.values_mut().for_each(|s| strip(&mut s.acl));
        Ok(true)
    }

    /// `GRANT role TO member`.
    pub fn grant_role(&mut self, role: &str, member: &str) -> Result<()> {
        let role_oid = self.role_named(role)?.oid;
        let member_oid = self.role_named(member)?.oid;
        if role_oid == member_oid || self.member_closure(role_oid).contains(&member_oid) {
            return Err(Error::InvalidGrant(format!("role \"{member}\" is a member of role \"{role}\"")));
        }
        let m = self.roles.get_mut(&member_oid).expect("role exists");
        if !m.member_of.contains(&role_oid) {
            m.member_of.push(role_oid);
        }
        Ok(())
    }

    /// `REVOKE role FROM member`; false when it was not granted.
    pub fn revoke_role(&mut self, role: &str, member: &str) -> Result<bool> {
        let role_oid = self.role_named(role)?.oid;
        let member_oid = self.role_named(member)?.oid;
        let m = self.roles.get_mut(&member_oid).expect("role exists");
        let before = m.member_of.len();
        m.member_of.retain(|r| *r != role_oid);
        Ok(m.member_of.len() != before)
    }

    /// `role` and every role it is a member of, directly or through others.
    pub fn member_closure(&self, role: u64) -> BTreeSet<u64> {
        let mut out = BTreeSet::from([role]);
        let mut todo = vec![role];
        while let Some(r) = todo.pop() {
            for m in self.roles.get(&r).map(|d| d.member_of.as_slice()).unwrap_or_default() {
                if out.insert(*m) {
                    todo.push(*m);
                }
            }
        }
        out
    }

    /// The roles whose privileges `role` uses: itself, plus its memberships when it inherits.
    fn privilege_roles(&self, role: u64) -> BTreeSet<u64> {
        match self.roles.get(&role) {
            Some(r) if !r.inherit => BTreeSet::from([role]),
            _ => self.member_closure(role),
        }
    }

    pub fn is_superuser(&self, role: u64) -> bool {
        self.roles.get(&role).is_some_and(|r| r.superuser)
    }

    fn acl_of(&self, object: AclObject) -> Result<(u64, &Vec<AclItem>)> {
        match object {
            AclObject::Relation(id) => {
                if let Some(t) = self.tables.get(&id) {
                    Ok((t.owner, &t.acl))
                } else if let Some(v) = self.views.get(&id) {
                    Ok((v.owner, &v.acl))
                } else {
                    Err(Error::UndefinedTable(id.to_string()))
                }
            }
            AclObject::Schema(name) => {
                self.schemas.get(name).map(|s| (s.owner, &s.acl)).ok_or_else(|| Error::UndefinedSchema(name.into()))
            }
        }
    }

    fn acl_mut(&mut self, object: AclObject) -> Result<&mut Vec<AclItem>> {
        match object {
            AclObject::Relation(id) => {
                if let Some(t) = self.tables.get_mut(&id) {
                    Ok(&mut t.acl)
                } else if let Some(v) = self.views.get_mut(&id) {
                    Ok(&mut v.acl)
                } else {
                    Err(Error::UndefinedTable(id.to_string()))
                }
            }
            AclObject::Schema(name) => {
                self.schemas.get_mut(name).map(|s| &mut s.acl).ok_or_else(|| Error::UndefinedSchema(name.into()))
            }
        }
    }

    /// The owner of a relation or schema.
    pub fn owner_of(&self, object: AclObject) -> Result<u64> {
        Ok(self.acl_of(object)?.0)
    }

    /// True when `role` owns `object` itself or through a role it is a member of (as in
    /// PostgreSQL, members of the owning role may alter and drop the object).
    pub fn owns(&self, role: u64, object: AclObject) -> Result<bool> {
        let owner = self.owner_of(object)?;
        Ok(self.is_superuser(role) || self.member_closure(role).contains(&owner))
    }

    /// The privileges `role` holds on `object`: everything for superusers and owners, otherwise
    /// the union of the grants to it, to the roles it inherits from and to `PUBLIC`.
    pub fn privileges(&self, role: u64, object: AclObject) -> Result<u32> {
        let all = match object {
            AclObject::Relation(_) => privilege::TABLE_ALL,
            AclObject::Schema(_) => privilege::SCHEMA_ALL,
        };
        if self.is_superuser(role) {
            return Ok(all);
        }
        let (owner, acl) = self.acl_of(object)?;
        let roles = self.privilege_roles(role);
        if roles.contains(&owner) {
            return Ok(all);
        }
        Ok(acl.iter().filter(|a| a.grantee == PUBLIC || roles.contains(&a.grantee)).fold(0, |p, a| p | a.privileges))
    }

    /// Gives `object` to `new_owner` (`ALTER … OWNER TO`). As in PostgreSQL, what the old owner
    /// granted is from then on granted by the new owner.
    pub fn set_owner(&mut self, object: AclObject, new_owner: u64) -> Result<()> {
        if self.role(new_owner).is_none() {
            return Err(Error::UndefinedObject { kind: "role", name: new_owner.to_string() });
        }
        let old = self.owner_of(object)?;
        match object {
            AclObject::Relation(id) => {
                if let Some(t) = self.tables.get_mut(&id) {
                    t.owner = new_owner;
                } else if let Some(v) = self.views.get_mut(&id) {
                    v.owner = new_owner;
                }
            }
            AclObject::Schema(name) => {
                if let Some(s) = self.schemas.get_mut(name) {
                    s.owner = new_owner;
                }
            }
        }
        for a in self.acl_mut(object)?.iter_mut().filter(|a| a.grantor == old) {
            a.grantor = new_owner;
        }
        Ok(())
    }

    /// Adds `privileges` on `object` for `grantee` ([`PUBLIC`] or a role oid).
    pub fn grant(&mut self, object: AclObject, grantee: u64, privileges: u32, grantor: u64) -> Result<()> {
        let acl = self.acl_mut(object)?;
        match acl.iter_mut().find(|a| a.grantee == grantee) {
            Some(a) => a.privileges |= privileges,
            None => acl.push(AclItem { grantee, privileges, grantor }),
        }
        Ok(())
    }

    /// Takes `privileges` on `object` away from `grantee`.
    pub fn revoke(&mut self, object: AclObject, grantee: u64, privileges: u32) -> Result<()> {
        let acl = self.acl_mut(object)?;
        for a in acl.iter_mut().filter(|a| a.grantee == grantee) {
            a.privileges &= !privileges;
        }
        acl.retain(|a| a.privileges != 0);
        Ok(())
    }

    /// PostgreSQL's access list items (`owner=arwdDxt/owner`, `alice=r/owner`, `=U/owner`), or
    /// `None` while nothing was granted (PostgreSQL's NULL: the default privileges).
    pub fn acl_items(&self, object: AclObject) -> Option<Vec<String>> {
        let (owner, acl) = self.acl_of(object).ok()?;
        if acl.is_empty() {
            return None;
        }
        let name = |oid: u64| match oid {
            PUBLIC => String::new(),
            o => self.roles.get(&o).map(|r| r.name.clone()).unwrap_or_else(|| o.to_string()),
        };
        let letters =
            |bits: u32| privilege::LETTERS.iter().filter(|(b, _)| bits & b != 0).map(|(_, c)| *c).collect::<String>();
        let all = match object {
            AclObject::Relation(_) => privilege::TABLE_ALL,
            AclObject::Schema(_) => privilege::SCHEMA_ALL,
        };
        let mut items = vec![format!("{}={}/{}", name(owner), letters(all), name(owner))];
        items.extend(acl.iter().map(|a| format!("{}={}/{}", name(a.grantee), letters(a.privileges), name(a.grantor))));
        Some(items)
    }

    /// [`acl_items`](Self::acl_items) as one array literal: `{a,b}`.
    pub fn acl_text(&self, object: AclObject) -> Option<String> {
        self.acl_items(object).map(|items| format!("{{{}}}", items.join(",")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_and_grants_combine() {
        let mut c = Catalog::default();
        let reader = c.create_role(RoleDef::new("reader")).expect("role");
        let mut alice = RoleDef::new("alice");
        alice.login = true;
        let alice = c.create_role(alice).expect("role");
        c.create_schema("app", false, BOOTSTRAP_SUPERUSER).expect("schema");
        // Nothing granted yet: only PUBLIC's USAGE on public.
        assert_eq!(c.privileges(alice, AclObject::Schema("public")).unwrap(), privilege::USAGE);
        assert_eq!(c.privileges(alice, AclObject::Schema("app")).unwrap(), 0);
        c.grant(AclObject::Schema("app"), reader, privilege::USAGE, BOOTSTRAP_SUPERUSER).unwrap();
        assert_eq!(c.privileges(alice, AclObject::Schema("app")).unwrap(), 0);
        c.grant_role("reader", "alice").unwrap();
        assert_eq!(c.privileges(alice, AclObject::Schema("app")).unwrap(), privilege::USAGE);
        // A NOINHERIT role does not use its memberships' privileges.
        c.role_mut("alice").unwrap().inherit = false;
        assert_eq!(c.privileges(alice, AclObject::Schema("app")).unwrap(), 0);
        c.role_mut("alice").unwrap().inherit = true;
        // Cycles are refused.
        let e = c.grant_role("alice", "reader").unwrap_err();
        assert_eq!(e.code().sqlstate(), "0LP01");
        assert_eq!(c.acl_text(AclObject::Schema("app")).unwrap(), "{postgres=UC/postgres,reader=U/postgres}");
        c.revoke(AclObject::Schema("app"), reader, privilege::USAGE).unwrap();
        assert_eq!(c.acl_text(AclObject::Schema("app")), None);
        // A role owning objects cannot be dropped; the superuser holds everything.
        c.create_schema("alices", false, alice).unwrap();
        assert_eq!(c.drop_role("alice", false).unwrap_err().code().sqlstate(), "2BP01");
        assert!(c.owns(alice, AclObject::Schema("alices")).unwrap());
        assert!(!c.owns(reader, AclObject::Schema("alices")).unwrap());
        assert_eq!(c.privileges(BOOTSTRAP_SUPERUSER, AclObject::Schema("alices")).unwrap(), privilege::SCHEMA_ALL);
        // Handing the schema over frees the role; the old owner's grants move with it.
        c.grant(AclObject::Schema("alices"), reader, privilege::USAGE, alice).unwrap();
        c.set_owner(AclObject::Schema("alices"), BOOTSTRAP_SUPERUSER).unwrap();
        assert!(!c.owns(alice, AclObject::Schema("alices")).unwrap());
        assert_eq!(c.acl_text(AclObject::Schema("alices")).unwrap(), "{postgres=UC/postgres,reader=U/postgres}");
        assert_eq!(c.set_owner(AclObject::Schema("alices"), 999_999).unwrap_err().code().sqlstate(), "42704");
        c.drop_schema("alices", false, false).unwrap();
        assert!(c.drop_role("alice", false).unwrap());
        assert!(c.role(reader).is_some());
        assert_eq!(c.drop_role("postgres", false).unwrap_err().code().sqlstate(), "42P16");
    }
}
