# Injected with -DCMAKE_PROJECT_INCLUDE by tools/bootstrap.py (pip route only).
#
# The ROS 2 wheels on PyPI export their *__rosidl_generator_py targets with the
# Python and NumPy include directories of the manylinux machine that built
# them (/opt/python/cp311-cp311/...). CMake rejects imported targets naming
# include directories that do not exist, so at the end of configuration (after
# every find_package has imported its targets) rewrite such directories to
# this interpreter's.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)

function(_slm_agent_fix_imported_python_includes)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_t IN LISTS _targets)
    get_target_property(_dirs ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_fixed "")
    set(_changed FALSE)
    foreach(_d IN LISTS _dirs)
      if(NOT _d MATCHES "^\\$<" AND NOT EXISTS "${_d}" AND _d MATCHES "numpy")
        list(APPEND _fixed ${Python3_NumPy_INCLUDE_DIRS})
        set(_changed TRUE)
      elseif(NOT _d MATCHES "^\\$<" AND NOT EXISTS "${_d}" AND _d MATCHES "include/python3")
        list(APPEND _fixed ${Python3_INCLUDE_DIRS})
        set(_changed TRUE)
      else()
        list(APPEND _fixed "${_d}")
      endif()
    endforeach()
    if(_changed)
      list(REMOVE_DUPLICATES _fixed)
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _slm_agent_fix_imported_python_includes)
