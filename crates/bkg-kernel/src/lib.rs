//! # bkg-kernel: the storage kernel of bkg-db
//!
//! ```text
//!   SQL layer (bkg-sql)                begin / scan / insert / delete / update / commit
//!        │
//!   ┌────▼──────────── Transaction ────────────┐   snapshot read_ts + private write set
//!   │  catalog (Arc<Catalog>, private on DDL)  │
//!   └────┬─────────────────────────────────────┘
//!        │ commit: validate (first committer wins, unique keys) → timestamp → install
//!        │         invisible versions → WAL record → group fsync → watermark → ack
//!   ┌────▼─────┐   ┌──────────────┐   ┌────────────────────────────┐
//!   │ TableStore│   │  WAL writer  │   │ checkpoint: Parquet + MANIFEST│
//!   │ versions  │   │ segments,CRC │   │ then WAL truncation          │
//!   └───────────┘   └──────────────┘   └────────────────────────────┘
//! ```
//!
//! Layer rule: this crate knows nothing of SQL text, DataFusion, pgwire or HTTP. It offers rows of
//! [`Value`]s, a catalog, transactions with snapshot isolation, durability and a change feed.
//! All file access goes through [`vfs::Vfs`] and time through [`vfs::Clock`], so tests inject faults.

pub mod acl;
pub mod arrow_conv;
pub mod catalog;
pub mod db;
pub mod error;
pub mod fk;
pub mod fuzzing;
pub mod limits;
pub mod mvcc;
pub mod publication;
pub mod record;
pub mod snapshot;
pub mod testutil;
pub mod util;
pub mod value;
pub mod vfs;
pub mod wal;

pub use acl::{AclItem, AclObject, BOOTSTRAP_SUPERUSER, PUBLIC, RoleDef, privilege};
pub use catalog::{
    Catalog, CheckDef, ColumnDef, ColumnDefault, FkAction, ForeignKeyDef, IndexDef, PolicyCommand, PolicyDef, TableDef,
    ViewDef,
};
pub use db::{
    ChangeSubscription, CheckpointInfo, CommitInfo, Database, DbStats, FeedError, InsertOutcome, IsolationLevel,
    OnConflict, Options, RecoveryInfo, RowLock, Savepoint, Transaction,
};
pub use error::{Error, ErrorCode, Result};
pub use limits::Limits;
pub use publication::{PublicationDef, PublishKinds};
pub use record::{Change, ChangeKind};
pub use value::{DataType, Row, Value};
