# Finds sshpool's Debian-packaged dependencies and wraps those without a CMake package
# (CAF 0.17.6, http-parser) in imported targets. Used by the build and by the installed
# sshpoolConfig.cmake, so consumers resolve the same targets.
include_guard(GLOBAL)
include(CMakeFindDependencyMacro)

find_dependency(Threads)
find_dependency(libssh CONFIG)   # target: ssh
find_dependency(OpenSSL)         # OpenSSL::Crypto (known_hosts' hashed names), OpenSSL::SSL (cluster)
find_dependency(spdlog CONFIG)   # target: spdlog::spdlog

function(_sshpool_import_library target header libname)
  if(TARGET ${target})
    return()
  endif()
  find_path(_inc_${libname} NAMES ${header})
  find_library(_lib_${libname} NAMES ${libname})
  if(NOT _inc_${libname} OR NOT _lib_${libname})
    message(FATAL_ERROR "sshpool: ${libname} not found (${header}); install the Debian package")
  endif()
  add_library(${target} UNKNOWN IMPORTED)
  set_target_properties(${target} PROPERTIES
    IMPORTED_LOCATION "${_lib_${libname}}"
    INTERFACE_INCLUDE_DIRECTORIES "${_inc_${libname}}")
endfunction()

_sshpool_import_library(sshpool_dep::caf_core caf/actor_system.hpp caf_core)
_sshpool_import_library(sshpool_dep::caf_io caf/io/middleman.hpp caf_io)
_sshpool_import_library(sshpool_dep::caf_openssl caf/openssl/manager.hpp caf_openssl)
_sshpool_import_library(sshpool_dep::http_parser http_parser.h http_parser)
if(TARGET sshpool_dep::caf_core)
  set_property(TARGET sshpool_dep::caf_core APPEND PROPERTY INTERFACE_LINK_LIBRARIES Threads::Threads)
  set_property(TARGET sshpool_dep::caf_io APPEND PROPERTY INTERFACE_LINK_LIBRARIES sshpool_dep::caf_core)
  set_property(TARGET sshpool_dep::caf_openssl APPEND PROPERTY INTERFACE_LINK_LIBRARIES
               sshpool_dep::caf_io OpenSSL::SSL)
endif()
