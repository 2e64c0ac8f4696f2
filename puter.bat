@echo off
rem BAT OS launcher (Windows).
rem   puter.bat           set up on first run, then start BAT OS on the default image
rem   puter.bat setup     set up only
rem   puter.bat test      set up what the tests need, then run the whole test suite
setlocal
cd /d "%~dp0"
set COMMAND=%1
if "%COMMAND%"=="" set COMMAND=start

if not exist .venv\Scripts\python.exe (
    echo setup: creating .venv
    python -m venv .venv || exit /b 1
)
set EXTRAS=model
if "%COMMAND%"=="test" set EXTRAS=model,dev
echo setup: installing batos[%EXTRAS%]
.venv\Scripts\python -m pip install --quiet --disable-pip-version-check -e ".[%EXTRAS%]" || exit /b 1

if "%COMMAND%"=="test" (
    .venv\Scripts\batos models assemble || exit /b 1
    .venv\Scripts\python -m pytest %2 %3 %4 %5 %6 %7 %8 %9
    exit /b %ERRORLEVEL%
)
.venv\Scripts\python -c "import llama_cpp" 2>nul || (
    echo setup: building llama-cpp-python 0.3.36 ^(portable CPU build^)
    set CMAKE_ARGS=-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF
    .venv\Scripts\python -m pip install --no-cache-dir llama-cpp-python==0.3.36 || exit /b 1
)
.venv\Scripts\batos models assemble || exit /b 1
if "%COMMAND%"=="setup" exit /b 0
.venv\Scripts\batos image init || exit /b 1
.venv\Scripts\batos image info
