//! Erasures: the users who asked to be forgotten, and what becomes of the
//! imports they own.

use apache_avro::types::Value;

use crate::Millis;
use crate::activity::check_id;
use crate::avro::{self, Fields, Record};
use crate::error::SchemaError;

/// What becomes of the imports a forgotten user owns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OwnedImports {
    /// They are deleted.
    Delete,
    /// This user takes them over.
    TransferTo(String),
}

/// One user who asked to be forgotten: the value of the erasures topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserErased {
    /// The forgotten user (the key).
    pub user_id: String,
    /// When the erasure was requested.
    pub erased_at: Millis,
    /// The admin or service that asked for it.
    pub requested_by: String,
    /// What becomes of the user's imports.
    pub imports: OwnedImports,
}

impl UserErased {
    /// Checks the ids: present, not too long, and not handing the imports to
    /// the user being forgotten.
    pub fn validate(&self) -> Result<(), SchemaError> {
        check_id("user_id", &self.user_id)?;
        check_id("requested_by", &self.requested_by)?;
        if let OwnedImports::TransferTo(to) = &self.imports {
            check_id("transfer_imports_to", to)?;
            if *to == self.user_id {
                return Err(SchemaError::invalid(
                    "transfer_imports_to",
                    "must name another user than the one forgotten",
                ));
            }
        }
        Ok(())
    }

    /// The Avro value of this record.
    pub fn to_value(&self) -> Value {
        let to = match &self.imports {
            OwnedImports::Delete => None,
            OwnedImports::TransferTo(u) => Some(u.clone()),
        };
        Record::new()
            .put("user_id", avro::string(&self.user_id))
            .put("erased_at", avro::millis(self.erased_at))
            .put("requested_by", avro::string(&self.requested_by))
            .put("transfer_imports_to", avro::opt_string(to.as_deref()))
            .build()
    }

    /// Reads a decoded record.
    pub fn from_value(value: Value) -> Result<UserErased, SchemaError> {
        let mut f = Fields::open("UserErased", "", value)?;
        let user_id = f.string("user_id")?;
        let erased_at = f.millis("erased_at")?;
        let requested_by = f.string("requested_by")?;
        let imports = match f.opt_string("transfer_imports_to")? {
            None => OwnedImports::Delete,
            Some(u) => OwnedImports::TransferTo(u),
        };
        Ok(UserErased {
            user_id,
            erased_at,
            requested_by,
            imports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Contract;

    #[test]
    fn erasures_round_trip_and_refuse_a_transfer_to_themselves() -> Result<(), SchemaError> {
        let c = Contract::load()?;
        for imports in [OwnedImports::Delete, OwnedImports::TransferTo("bob".into())] {
            let e = UserErased {
                user_id: "ann".into(),
                erased_at: 1_700_000_000_000,
                requested_by: "admin-1".into(),
                imports,
            };
            assert_eq!(c.decode_erasure(&c.encode_erasure(&e)?)?, e);
        }
        let to_self = UserErased {
            user_id: "ann".into(),
            erased_at: 0,
            requested_by: "admin-1".into(),
            imports: OwnedImports::TransferTo("ann".into()),
        };
        let err = c.decode_erasure(&c.encode_erasure(&to_self)?);
        assert!(
            matches!(&err, Err(SchemaError::Invalid { field, .. }) if field == "transfer_imports_to"),
            "{err:?}"
        );
        Ok(())
    }
}
