//! A namespace of its own for each test, so tests never see each other's objects.
//!
//! Namespaces are not deleted: without kube-controller-manager a deleted namespace
//! stays Terminating forever, and the whole control plane goes away with the test
//! binary anyway.

use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

#[derive(Clone)]
pub struct TestNamespace {
    name: String,
    client: Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace").field("name", &self.name).finish_non_exhaustive()
    }
}

impl TestNamespace {
    pub(crate) fn new(name: String, client: Client) -> Self {
        TestNamespace { name, client }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// An API handle for namespaced resources of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + DeserializeOwned,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}
