# The memory allocator of troupe's executables.
#
# The daemon allocates and frees many small objects on several threads (actor
# messages, task records, JSON). glibc's malloc pays for that in arena locks
# and in trimming per-thread heaps (madvise, page faults, TLB shootdowns);
# tcmalloc's per-thread caches do not (docs/benchmarks.md, "Allocator").
#
# TROUPE_ALLOCATOR: "tcmalloc" (default; gperftools' tcmalloc_minimal from
# Debian's libgoogle-perftools-dev) or "system" (glibc). Sanitizer builds always
# use the system allocator, which the sanitizers replace with their own.
set(TROUPE_ALLOCATOR "tcmalloc" CACHE STRING "Memory allocator of the executables: tcmalloc or system")
set_property(CACHE TROUPE_ALLOCATOR PROPERTY STRINGS tcmalloc system)

add_library(troupe_allocator INTERFACE)
if(TROUPE_ALLOCATOR STREQUAL "tcmalloc" AND NOT TROUPE_SANITIZERS)
  find_library(TCMALLOC_MINIMAL_LIBRARY tcmalloc_minimal)
  find_path(TCMALLOC_INCLUDE_DIR gperftools/malloc_extension_c.h)
  if(TCMALLOC_MINIMAL_LIBRARY AND TCMALLOC_INCLUDE_DIR)
    # GCC may otherwise fold malloc/free pairs as builtins around the replacement.
    target_compile_options(troupe_allocator INTERFACE
      -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free)
    target_include_directories(troupe_allocator SYSTEM INTERFACE "${TCMALLOC_INCLUDE_DIR}")
    target_link_libraries(troupe_allocator INTERFACE "${TCMALLOC_MINIMAL_LIBRARY}")
    target_compile_definitions(troupe_allocator INTERFACE TROUPE_WITH_TCMALLOC=1)
    message(STATUS "troupe: executables use tcmalloc (${TCMALLOC_MINIMAL_LIBRARY})")
  else()
    message(WARNING "troupe: tcmalloc_minimal not found (Debian: libgoogle-perftools-dev); "
                    "using the system allocator, which is markedly slower for the daemon")
  endif()
else()
  message(STATUS "troupe: executables use the system allocator")
endif()
