//! The one part of the catalogue that touches the filesystem: reading a catalogue file.

use std::path::Path;

use super::{Catalog, CatalogError, CatalogSource, EMBEDDED_CATALOG};

impl Catalog {
    /// Loads the catalogue from `path`, or the built-in one when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Catalog, CatalogError> {
        match path {
            None => Self::parse(EMBEDDED_CATALOG, CatalogSource::Embedded),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| CatalogError::Read { path: p.to_path_buf(), source })?;
                Self::parse(&text, CatalogSource::File(p.to_path_buf()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_and_named_in_every_error() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("catalog.json");
        std::fs::write(&path, r#"{"format": 1, "modules": [{"name": "m", "parameters": ["x"]}], "outputs": []}"#)
            .expect("write");
        let catalog = Catalog::load(Some(&path)).expect("loads");
        assert_eq!(catalog.source(), &CatalogSource::File(path.clone()));
        assert!(catalog.parse_variable("m#1.x").is_some());
        assert_eq!(Catalog::load(None).expect("the built-in catalogue").source(), &CatalogSource::Embedded);

        std::fs::write(&path, "{\n  \"format\": 1,\n").expect("write");
        let err = Catalog::load(Some(&path)).expect_err("truncated");
        assert!(err.to_string().starts_with(&format!("{} line 3", path.display())), "{err}");

        let missing = dir.path().join("nope.json");
        let err = Catalog::load(Some(&missing)).expect_err("missing");
        assert!(matches!(&err, CatalogError::Read { path, .. } if *path == missing), "{err}");
        assert!(err.to_string().starts_with(&format!("cannot read catalogue {}: ", missing.display())), "{err}");
    }
}
