# A private interface target that carries our warnings and sanitizer flags.
add_library(troupe_warnings INTERFACE)
target_compile_options(troupe_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow)
if(TROUPE_WARNINGS_AS_ERRORS)
  target_compile_options(troupe_warnings INTERFACE -Werror)
endif()

if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  # GCC 12 at -O2 warns (-Wrestrict) inside libstdc++ for `"text" + std::string(...)`,
  # a known false positive of that compiler (GCC bug 105329); it fired on five lines
  # of a release build of the daemon and on none of a debug one.
  target_compile_options(troupe_warnings INTERFACE -Wno-restrict)
endif()

if(TROUPE_SANITIZERS MATCHES "thread")
  # GCC 12 warns (-Wtsan) about asio's std::atomic_thread_fence; that is asio's, not ours.
  target_compile_options(troupe_warnings INTERFACE -Wno-error=tsan -Wno-tsan)
endif()
if(TROUPE_SANITIZERS)
  add_compile_options(-fsanitize=${TROUPE_SANITIZERS} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${TROUPE_SANITIZERS})
endif()

# troupe_module(NAME DIR) declares a library target troupe_NAME with alias troupe::NAME
# from the sources given, with public headers under DIR/include.
function(troupe_module name)
  cmake_parse_arguments(M "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(troupe_${name} STATIC ${M_SOURCES})
  add_library(troupe::${name} ALIAS troupe_${name})
  target_include_directories(troupe_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(troupe_${name} PUBLIC ${M_PUBLIC_DEPS} PRIVATE ${M_PRIVATE_DEPS} troupe_warnings)
endfunction()
