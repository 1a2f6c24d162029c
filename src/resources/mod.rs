//! One file per resource, data source and list resource.
