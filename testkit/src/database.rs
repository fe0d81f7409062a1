//! A Postgres database of its own for each test.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

use crate::cleanup::run_to_completion;
use crate::services::{postgres_server_url, unique_name};

/// A fresh, empty database of its own, dropped on drop.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn new() -> Self {
        let name = unique_name("test");
        let admin = admin_connection().await;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = format!("{}/{name}", postgres_server_url());
        Self { name, url }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url).await.unwrap()
    }
}

async fn admin_connection() -> DatabaseConnection {
    Database::connect(format!("{}/postgres", postgres_server_url()))
        .await
        .expect("Postgres must run on 127.0.0.1:5432 for these tests")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_to_completion(move || async move {
            let admin = admin_connection().await;
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        });
    }
}
