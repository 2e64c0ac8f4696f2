@echo off
rem BAT OS launcher (Windows).
rem   puter.bat           set up on first run, start the kernel in the background, open the console
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
if not exist logs mkdir logs
if "%BATOS_ENDPOINT%"=="" set BATOS_ENDPOINT=tcp://127.0.0.1:5555
start "BAT OS kernel" /b cmd /c ".venv\Scripts\batos kernel --endpoint %BATOS_ENDPOINT% >> logs\kernel.log 2>&1"
echo kernel starting on %BATOS_ENDPOINT%; log: %CD%\logs\kernel.log
.venv\Scripts\batos ping --endpoint %BATOS_ENDPOINT% --timeout 60 >nul || exit /b 1
.venv\Scripts\batos console --endpoint %BATOS_ENDPOINT%
rem Stop the kernel gracefully once the console exits (CTRL_BREAK is not
rem deliverable to a /b child, so taskkill without /f asks it to close).
for /f "tokens=2 delims=:, " %%p in ('.venv\Scripts\batos ping --endpoint %BATOS_ENDPOINT% --json ^| findstr /c:"\"pid\""') do taskkill /pid %%p >nul 2>&1
