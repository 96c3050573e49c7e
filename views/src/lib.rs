//! The read models of sessionfold: who is online, whose import is what.
//!
//! The projections service keeps these views up to date from the changelog
//! topics and serves them over HTTP; replay builds the same views as of a
//! chosen time from the input history. Both answer with the JSON types and
//! time format defined here, so a live answer and a replayed one compare
//! byte for byte. Pure code: states in, answers out.

pub mod changes;
pub mod counts;
pub mod freshness;
pub mod history;
pub mod imports;
pub mod rooms;
pub mod view;
