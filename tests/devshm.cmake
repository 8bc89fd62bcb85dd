# MODE=save: record the entries of /dev/shm in FILE.
# MODE=compare: fail if /dev/shm differs from what FILE recorded.
file(GLOB entries RELATIVE /dev/shm /dev/shm/*)
list(SORT entries)
string(REPLACE ";" "\n" listing "${entries}")
if(MODE STREQUAL "save")
  file(WRITE "${FILE}" "${listing}")
else()
  file(READ "${FILE}" before)
  if(NOT before STREQUAL listing)
    message(FATAL_ERROR "/dev/shm changed during the test suite.\nBefore:\n${before}\nAfter:\n${listing}")
  endif()
  message(STATUS "/dev/shm unchanged")
endif()
