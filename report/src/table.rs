//! Tables for analysts as Parquet files, written with the Apache Arrow
//! crates, so that DuckDB, pandas and Spark read them as they are: each
//! column named and typed once (text, whole numbers, times in UTC
//! milliseconds, flags), every value nullable.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::ReportError;

/// One column's values.
#[derive(Debug, Clone)]
enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Time(Vec<Option<i64>>),
    Flag(Vec<Option<bool>>),
}

impl Values {
    fn data_type(&self) -> DataType {
        match self {
            Values::Text(_) => DataType::Utf8,
            Values::Int(_) => DataType::Int64,
            Values::Time(_) => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Values::Flag(_) => DataType::Boolean,
        }
    }

    fn array(&self) -> ArrayRef {
        match self {
            Values::Text(v) => Arc::new(StringArray::from(v.clone())),
            Values::Int(v) => Arc::new(Int64Array::from(v.clone())),
            Values::Time(v) => {
                Arc::new(TimestampMillisecondArray::from(v.clone()).with_timezone("UTC"))
            }
            Values::Flag(v) => Arc::new(BooleanArray::from(v.clone())),
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::Text(v) => v.len(),
            Values::Int(v) | Values::Time(v) => v.len(),
            Values::Flag(v) => v.len(),
        }
    }
}

/// A table built column by column.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<(&'static str, Values)>,
}

impl Table {
    /// No columns yet.
    pub fn new() -> Table {
        Table::default()
    }

    /// Adds a text column.
    pub fn text<S: Into<String>>(
        mut self,
        name: &'static str,
        values: impl IntoIterator<Item = Option<S>>,
    ) -> Table {
        let v = values.into_iter().map(|s| s.map(Into::into)).collect();
        self.columns.push((name, Values::Text(v)));
        self
    }

    /// Adds a column of whole numbers.
    pub fn int(
        mut self,
        name: &'static str,
        values: impl IntoIterator<Item = Option<i64>>,
    ) -> Table {
        self.columns
            .push((name, Values::Int(values.into_iter().collect())));
        self
    }

    /// Adds a column of times (milliseconds since the epoch, UTC).
    pub fn time(
        mut self,
        name: &'static str,
        values: impl IntoIterator<Item = Option<i64>>,
    ) -> Table {
        self.columns
            .push((name, Values::Time(values.into_iter().collect())));
        self
    }

    /// Adds a column of flags.
    pub fn flag(
        mut self,
        name: &'static str,
        values: impl IntoIterator<Item = Option<bool>>,
    ) -> Table {
        self.columns
            .push((name, Values::Flag(values.into_iter().collect())));
        self
    }

    /// Rows in the table.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, v)| v.len())
    }

    /// The table's Arrow schema.
    pub fn schema(&self) -> Arc<Schema> {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(name, v)| Field::new(*name, v.data_type(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// The table as one Arrow record batch.
    pub fn batch(&self) -> Result<RecordBatch, ReportError> {
        RecordBatch::try_new(
            self.schema(),
            self.columns.iter().map(|(_, v)| v.array()).collect(),
        )
        .map_err(|e| ReportError::Parquet(e.to_string()))
    }

    /// The table as a Parquet file.
    pub fn to_parquet(&self) -> Result<Vec<u8>, ReportError> {
        let mut out = Vec::new();
        let mut w = writer(&mut out, self.schema())?;
        w.write(&self.batch()?)
            .map_err(|e| ReportError::Parquet(e.to_string()))?;
        w.close().map_err(|e| ReportError::Parquet(e.to_string()))?;
        Ok(out)
    }
}

/// A Parquet writer with the settings every table of a report uses:
/// snappy pages, statistics for DuckDB's and Spark's pruning.
pub fn writer<W: std::io::Write + Send>(
    out: W,
    schema: Arc<Schema>,
) -> Result<ArrowWriter<W>, ReportError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    ArrowWriter::try_new(out, schema, Some(props)).map_err(|e| ReportError::Parquet(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_round_trips_through_parquet() -> Result<(), Box<dyn std::error::Error>> {
        let t = Table::new()
            .text("user_id", [Some("ann"), None])
            .int("n", [Some(3), Some(-1)])
            .time("at", [Some(1_700_000_000_000), None])
            .flag("open", [Some(true), Some(false)]);
        let bytes = t.to_parquet()?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )?
        .build()?;
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0], t.batch()?);
        Ok(())
    }
}
