gem 'smart_proxy_registry_gate'
