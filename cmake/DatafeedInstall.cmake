# datafeed_installed_library(NAME INCLUDE_DIR DIR)
#
# What `cmake --install` and the Debian package ship of datafeed::NAME: a
# shared library, libdatafeed_NAME.so, linked from the objects of the static
# library datafeed_NAME that the build tree uses (nothing is compiled
# twice), plus the public headers under DIR/datafeed/. The target,
# datafeed_NAME_shared, joins the export set as datafeed::NAME.
#
# Why shared: the static libraries' private dependencies (gRPC, protobuf,
# flatbuffers, Boost, OpenCV, TurboJPEG, libjpeg, libarchive) would have to
# be recorded in the exported targets and found again by every project that
# uses datafeed, -dev packages and all. A shared library keeps them private
# for real: the dynamic loader finds them at run time, and a user's
# find_package(datafeed) needs only Threads (and Torch for datafeed::torch).
# The build tree's tools, tests, the Python package's libdatafeed_c.so and
# the GPU bundle keep linking the static libraries.
#
# The shared library links what the static one's link interface names,
# with datafeed's own libraries swapped for their shared versions: public
# entries stay public, private ($<LINK_ONLY:...>) ones private. Call it
# after the static library's last target_link_libraries.
#
# EXPORT_SET: datafeedTargets (transport, producer, consumer) or
# datafeedTorchTargets (torch, which needs Torch to be found).
include_guard(GLOBAL)
include(GNUInstallDirs)

function(datafeed_installed_library name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "INCLUDE_DIR;EXPORT_SET" "")
  if(NOT arg_INCLUDE_DIR OR NOT arg_EXPORT_SET)
    message(FATAL_ERROR "datafeed_installed_library(${name}): INCLUDE_DIR and EXPORT_SET are required")
  endif()
  set(static datafeed_${name})
  set(shared datafeed_${name}_shared)
  add_library(${shared} SHARED $<TARGET_OBJECTS:${static}>)
  set_target_properties(${shared} PROPERTIES
    OUTPUT_NAME datafeed_${name}
    EXPORT_NAME ${name}
    VERSION ${PROJECT_VERSION}
    # 0.x: every minor release may change the ABI.
    SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
    # Installed next to each other wherever the prefix is; dpkg-shlibdeps
    # follows $ORIGIN too.
    INSTALL_RPATH "$ORIGIN"
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lib)
  target_include_directories(${shared} PUBLIC
    $<BUILD_INTERFACE:${arg_INCLUDE_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(${shared} PUBLIC cxx_std_17)
  # A symbol none of the libraries defines fails this link, not a user's.
  target_link_options(${shared} PRIVATE -Wl,-z,defs)

  get_target_property(items ${static} INTERFACE_LINK_LIBRARIES)
  foreach(item IN LISTS items)
    set(scope PUBLIC)
    if(item MATCHES "^\\$<LINK_ONLY:(.*)>$")
      set(item ${CMAKE_MATCH_1})
      set(scope PRIVATE)
    endif()
    if(item STREQUAL "datafeed_warnings")
      continue()
    endif()
    if(item MATCHES "^datafeed(::|_)(transport|producer|consumer|torch)$")
      set(item datafeed_${CMAKE_MATCH_2}_shared)
    endif()
    target_link_libraries(${shared} ${scope} ${item})
  endforeach()

  install(TARGETS ${shared} EXPORT ${arg_EXPORT_SET}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY ${arg_INCLUDE_DIR}/datafeed DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
    FILES_MATCHING PATTERN "*.h")
endfunction()
