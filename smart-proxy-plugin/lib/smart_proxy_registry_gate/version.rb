module Proxy
  module RegistryGate
    VERSION = '0.1.0'.freeze
  end
end
